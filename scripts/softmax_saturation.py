"""Why attention divides by sqrt(d_k) (tinygpt-softmax-saturation).
Same arguments: see `tinygpt.cli.softmax_saturation`."""

from tinygpt.cli.softmax_saturation import main

if __name__ == "__main__":
    main()
