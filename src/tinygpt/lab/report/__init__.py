"""A sweep's report (`tinygpt-report`): its runs read back (`runs`, `events`), the tables with
Welch's t-test across seeds (`tables`, `formation`, `stats`), the plots, and report.md (`page`)."""
