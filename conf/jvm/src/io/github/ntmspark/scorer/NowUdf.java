package io.github.ntmspark.scorer;

import java.sql.Timestamp;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF0;
import org.apache.spark.sql.functions;
import org.apache.spark.sql.types.DataTypes;

/**
 * Spark SQL function {@code ntm_now()}: the time a row is scored, read per row.
 *
 * <p>{@code current_timestamp()} is fixed once per (micro-)batch, and a real-time batch lasts
 * minutes; the records' {@code scored_at} must be when each was scored, as in the Python path.
 * Registered as non-deterministic, so Spark neither folds nor reuses it.
 */
public class NowUdf implements UDF0<Timestamp> {
  private static final long serialVersionUID = 1L;

  /** Register {@code ntm_now} in {@code spark} as a non-deterministic function. */
  public static void register(SparkSession spark) {
    spark.udf().register("ntm_now", functions.udf(new NowUdf(), DataTypes.TimestampType).asNondeterministic());
  }

  @Override
  public Timestamp call() {
    return Timestamp.from(java.time.Instant.now());
  }
}
