"""The composable pipeline: reader -> transforms -> cache -> writer."""
