"""Evaluation: the ISBI challenge's and instance metrics (``metrics``) and the choice of a model's
decision on validation data (``calibrate``)."""
