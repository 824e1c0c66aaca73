package io.github.ntmspark.scorer;

import org.apache.spark.sql.api.java.UDF2;

/**
 * Spark SQL function {@code ntm_bow(text, model_folder)}: the vocabulary index of each of the
 * document's lemmas, in order ({@code Vocabulary.indices_of(normalizer.normalize(text))}), for
 * checking the JVM text rules against Python's.
 */
public class BowUdf implements UDF2<String, String, int[]> {
  private static final long serialVersionUID = 1L;

  @Override
  public int[] call(String text, String folder) {
    return text == null ? null : NtmScorer.load(folder).vocabIndices(text);
  }
}
