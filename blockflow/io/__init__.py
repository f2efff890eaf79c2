"""Models as data and as pictures: model files (``modelfile``) and diagrams
(``export``)."""
