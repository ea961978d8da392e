"""Training-only augmentation, batched in TensorFlow so two CPU cores are not starved by Python.

The crop-scale step is what makes the model robust to framing: tight FER2013 crops and loose
UTKFace crops are each cropped at random scales, so the model sees the whole range between a tight
detector box and an aligned face with hair and neck.
"""

from __future__ import annotations

import math

import tensorflow as tf

from training.config import AugmentConfig, FramingConfig


def _uniform(n: tf.Tensor, lo: float | tf.Tensor, hi: float | tf.Tensor) -> tf.Tensor:
    return tf.random.uniform([n], 0.0, 1.0) * (hi - lo) + lo


def make_augmenter(framing: FramingConfig, aug: AugmentConfig, size: int):  # type: ignore[no-untyped-def]
    """Returns ``fn(images_uint8 [B,C,C,1], framing_tag [B]) -> float32 [B,size,size,1] in [0,1]``."""

    # Scales above 1 reach past the stored image: reflect-pad once so those crops see mirrored
    # context rather than black bars, which no camera frame has.
    reach = max(framing.tight_scale[1], framing.loose_scale[1], framing.wide_scale[1]) - 1.0
    pad = math.ceil(reach * framing.canvas) if reach > 0 else 0

    def augment(images: tf.Tensor, tag: tf.Tensor) -> tf.Tensor:
        n = tf.shape(images)[0]
        x = tf.cast(images, tf.float32) / 255.0
        # tag: 0 tight (FER2013, LFW), 1 loose (UTKFace, users' data), 2 wide (AAF)
        scales = tf.constant([framing.tight_scale, framing.loose_scale, framing.wide_scale], tf.float32)
        lo_hi = tf.gather(scales, tf.cast(tag, tf.int32))
        lo, hi = lo_hi[:, 0], lo_hi[:, 1]
        s = tf.random.uniform([n]) * (hi - lo) + lo
        half = s / 2.0
        # The box stays inside the image when smaller than it and contains it when larger.
        c_lo, c_hi = tf.minimum(half, 1.0 - half), tf.maximum(half, 1.0 - half)
        cx = tf.clip_by_value(0.5 + _uniform(n, -framing.shift, framing.shift), c_lo, c_hi)
        cy = tf.clip_by_value(0.5 + _uniform(n, -framing.shift, framing.shift), c_lo, c_hi)
        boxes = tf.stack([cy - half, cx - half, cy + half, cx + half], axis=1)
        if pad:
            # crop_and_resize maps box 0..1 to pixel centres 0..side-1; keep that after padding.
            span = tf.cast(tf.shape(x)[1] - 1, tf.float32)
            x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
            boxes = (boxes * span + pad) / (span + 2.0 * pad)
        x = tf.image.crop_and_resize(x, boxes, tf.range(n), (size, size))
        if aug.flip:
            flip = tf.random.uniform([n, 1, 1, 1]) < 0.5
            x = tf.where(flip, tf.reverse(x, axis=[2]), x)
        if aug.rotation_deg > 0:
            theta = _uniform(n, -aug.rotation_deg, aug.rotation_deg) * (math.pi / 180.0)
            c, si = tf.cos(theta), tf.sin(theta)
            mid = (size - 1) / 2.0
            zeros = tf.zeros_like(c)
            # Output pixel -> input pixel mapping for a rotation about the image centre.
            transforms = tf.stack(
                [c, -si, mid - c * mid + si * mid, si, c, mid - si * mid - c * mid, zeros, zeros], axis=1
            )
            x = tf.raw_ops.ImageProjectiveTransformV3(
                images=x,
                transforms=transforms,
                output_shape=[size, size],
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode="REFLECT",
            )
        if aug.contrast > 0 or aug.brightness > 0:
            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            contrast = tf.reshape(_uniform(n, 1.0 - aug.contrast, 1.0 + aug.contrast), [-1, 1, 1, 1])
            bright = tf.reshape(_uniform(n, -aug.brightness, aug.brightness), [-1, 1, 1, 1])
            x = (x - mean) * contrast + mean + bright
        return tf.clip_by_value(x, 0.0, 1.0)

    return augment
