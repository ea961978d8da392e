"""The shipped model (int8 TFLite + card), importable so an installed agent can find it."""
