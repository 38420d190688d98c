"""Training: one loop (:mod:`~ccrec.train.loop`), one stage table
(:mod:`~ccrec.train.stages`), two drivers (local :mod:`~ccrec.train.cascade`,
Ray :mod:`~ccrec.train.distributed` with its :mod:`~ccrec.train.stage_runner`,
:mod:`~ccrec.train.ingest`, :mod:`~ccrec.train.checkpoint` and
:mod:`~ccrec.train.stage_cache`) and one train → validate → bundle
(:mod:`~ccrec.train.run`)."""
