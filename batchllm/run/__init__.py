"""The run's lifecycle: admission, the worker pool, signals, the run record, batch mode."""
