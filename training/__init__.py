"""Reproducing FPNet: weight conversion, teacher, data set building, training and evaluation."""
