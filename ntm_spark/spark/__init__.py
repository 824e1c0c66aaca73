"""The Spark jobs' library: session, readers/writers, preprocessing, the streaming query, backfill."""
