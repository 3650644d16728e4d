"""The ``anchors`` engine: DISCO (Xia et al., "Disentangled Image Colorization via Global Anchors", TOG 2022)
at CPU size. See :mod:`restorer.models.anchors.model` for the network and
:mod:`restorer.models.anchors.engine` for the engine contract."""
