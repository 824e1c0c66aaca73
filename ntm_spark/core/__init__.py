"""The shared contract: config, schema, text rules, vocabulary, document checks, dataset and model folders, topic metrics. Imports nothing above it."""
