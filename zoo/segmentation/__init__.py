"""Semantic segmentation from the book's computer-vision chapter: transposed convolution and its
bilinear initialisation (``transposed``), the segmentation base class (``segmenter``) and the fully
convolutional network (``fcn``, registered as "fcn"). The data are the per-pixel label maps of the
Fashion-MNIST scenes (:mod:`zoo.detection.scenes`)."""

from .transposed import bilinear_kernel, trans_conv

__all__ = ["bilinear_kernel", "trans_conv"]
