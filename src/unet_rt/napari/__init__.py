"""The napari plugin (npe2 manifest ``napari.yaml``): a reader and the "Segment with unet-rt" widget
(``plugin``)."""
