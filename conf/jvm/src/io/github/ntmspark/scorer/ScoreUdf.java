package io.github.ntmspark.scorer;

import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF5;

/**
 * Spark SQL function {@code ntm_score(text, model_folder, max_text_bytes, top_k, top_words)}: one
 * document's {@code struct<error_code, error_message, topic_weights array<float>,
 * top_topics array<struct<topic int, weight float, words array<string>>>, n_tokens int,
 * n_oov_tokens int>}, as the Python stream's {@code score_texts_frame} gives it (the counts are
 * null for a document that failed a document check, as there). Registered by {@code ntm_spark.spark.jvm_scoring.register_jvm_scorer}
 * ({@code spark.udf.registerJavaFunction}); the model folder is loaded once per executor JVM.
 */
public class ScoreUdf implements UDF5<String, String, Long, Integer, Integer, Row> {
  private static final long serialVersionUID = 1L;

  /**
   * The struct this jar returns ({@code ntm_spark.spark.jvm_scoring.SCORER_API_VERSION}): 2 added
   * {@code n_tokens} and {@code n_oov_tokens}. Python checks it, so an older jar fails with "make jars".
   */
  public static int apiVersion() {
    return 2;
  }

  @Override
  public Row call(String text, String folder, Long maxTextBytes, Integer topK, Integer topWords) {
    NtmScorer scorer = NtmScorer.load(folder);
    NtmScorer.Result r = scorer.score(text, maxTextBytes == null ? 1_000_000L : maxTextBytes);
    Integer tokens = r.tokens < 0 ? null : r.tokens;
    Integer oov = r.oovTokens < 0 ? null : r.oovTokens;
    if (r.errorCode != null) {
      return RowFactory.create(r.errorCode, r.errorMessage, null, null, tokens, oov);
    }
    List<Float> weights = new ArrayList<>(r.weights.length);
    for (float w : r.weights) {
      weights.add(w);
    }
    List<Row> tops = new ArrayList<>();
    for (int t : scorer.topTopics(r.weights, topK == null ? 3 : topK)) {
      tops.add(RowFactory.create(t, r.weights[t], scorer.topicWords(t, topWords == null ? 5 : topWords)));
    }
    return RowFactory.create(null, null, weights, tops, tokens, oov);
  }
}
