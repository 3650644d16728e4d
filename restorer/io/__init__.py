"""Pictures and films in and out; nothing here knows about engines.

* :mod:`restorer.io.images`: photo files in and out (PNG, JPEG, TIFF, WebP; EXIF and ICC kept);
* :mod:`restorer.io.color`: the colour core (Lab, Y'PbPr, the luma-keeping recombination, upsampling);
* film I/O, one module per step: :mod:`~restorer.io.film` (what a film is), :mod:`~restorer.io.probe`,
  :mod:`~restorer.io.decode`, :mod:`~restorer.io.encode`, :mod:`~restorer.io.mux`;
* :mod:`restorer.io.codecs`: the film codecs, one table (a new codec is one entry there).
"""
