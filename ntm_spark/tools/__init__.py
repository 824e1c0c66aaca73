"""Developer and operator tools: local services, NLTK data, the `ntm` command."""
