"""The report page's templates (package data, read by :func:`ntm_spark.report.page.read_template`)."""
