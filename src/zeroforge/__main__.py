"""``python -m zeroforge`` (what torchrun launches)."""

from zeroforge.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
