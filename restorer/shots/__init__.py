"""shots.yaml, in one package: ``schema`` (the pydantic models), ``load`` (reading, errors at ``file:line``),
``paths`` (sidecars, paths kept inside the file's folder), ``resolve`` (the one path from a file to a film's
shots, engine text check included), ``regions`` (a prompt as a mask), ``detect`` (cuts and the template)."""
