"""``python -m speechvae ...`` runs the command-line interface (``speechvae --help``)."""


def _main() -> None:
    try:
        from speechvae_cli import main
    except ImportError as exc:  # e.g. run from a checkout that was never installed
        raise SystemExit(f"error: the speechvae command-line interface is not installed "
                         f"({exc}); run 'pip install -e .' in the repository") from None
    main()


if __name__ == "__main__":
    _main()
