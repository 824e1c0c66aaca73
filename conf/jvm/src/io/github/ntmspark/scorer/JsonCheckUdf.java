package io.github.ntmspark.scorer;

import org.apache.spark.sql.api.java.UDF1;

/** Spark SQL function {@code ntm_single_json(raw_value)}: {@link SingleJson#check}. */
public class JsonCheckUdf implements UDF1<String, String> {
  private static final long serialVersionUID = 1L;

  @Override
  public String call(String raw) {
    return SingleJson.check(raw);
  }
}
