"""The teaching demos: the chapter's worked example (`walkthrough`), the softmax's saturation
(`softmax_saturation`), and a trained model's heads drawn and ablated (`heads`)."""
