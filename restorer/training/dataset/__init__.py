"""Training datasets: ``restorer dataset build`` (:mod:`.build`) turns colour photos into records (image,
instance masks, "object + colour" texts) with train / dev / test splits (:mod:`.splits`); every trainer reads
them through :mod:`.records`."""
