"""galprof: learn what a person is interested in from their photo gallery, on the device."""

__version__ = "0.1.0"
