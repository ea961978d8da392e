"""facecast agent: the device runtime (camera -> faces -> int8 classifier -> events -> publisher).

Nothing in this package may import TensorFlow: it must install and run on a Raspberry Pi with
LiteRT alone.
"""

__version__ = "0.1.0"
