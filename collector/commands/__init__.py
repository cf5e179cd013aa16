"""The ``cellmon`` command line and the commands that run the pipeline over history or a demo."""
