"""The shipped experiment configs (installed as the ``jaxvad.configs`` package)."""
