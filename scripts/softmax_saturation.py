"""Why attention divides by sqrt(d_k) (tinygpt-softmax-saturation).
Same arguments: see `tinygpt.cli.saturation`."""

from tinygpt.cli.saturation import main

if __name__ == "__main__":
    main()
