"""LoadGen: running it (``run``, the only importer of mlperf_loadgen), its logs, its trace and user.conf."""
