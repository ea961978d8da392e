"""facecast training side: datasets -> multi-task CNN -> full-integer int8 TFLite + model card."""
