package io.github.ntmspark.scorer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The JVM twin of {@code ntm_spark.serving.scoring.TopicScorer.score_texts}: document checks,
 * the model's text rules, the vocabulary and the encoder, from a registered model folder.
 *
 * <p>Reads {@code vocab.txt}, {@code lemmas.json} and {@code jvm/} ({@code scorer.json},
 * {@code unicode.json}, the encoder's {@code .npy} tensors), which
 * {@code ntm_spark.serving.jvm_export.export_jvm_scorer} writes when the model is registered.
 * Python is the definition; {@code tests/ntm_spark/spark/test_jvm_scorer.py} checks this class
 * against it on every 20 Newsgroups document. One instance per model folder per JVM
 * ({@link #load}); it is immutable and thread-safe.
 */
public final class NtmScorer {
  /** The export format this class reads (ntm_spark.core.contract.JVM_EXPORT_FORMAT_VERSION). */
  public static final int FORMAT_VERSION = 1;
  /** ntm_spark.core.checks.BINARY_CONTROL_FRACTION. */
  private static final double BINARY_CONTROL_FRACTION = 0.1;
  /** ntm_spark.serving.scoring.WEIGHTS_SUM_TOLERANCE. */
  private static final double WEIGHTS_SUM_TOLERANCE = 1e-5;
  private static final Map<String, NtmScorer> CACHE = new ConcurrentHashMap<>();

  private final String folder;
  private final TextRules rules;
  private final Map<String, Integer> vocab = new HashMap<>();
  private final List<String> words = new ArrayList<>();
  private final Encoder encoder;
  private final List<List<String>> topicWords = new ArrayList<>();
  private final String unicodeSource;

  /**
   * A scored document: weights, or an error code and message (the dead-letter codes), and its token
   * counts ({@code ScoreResult.tokens} / {@code oov_tokens}: -1 when the document never reached
   * normalization, i.e. a document check failed).
   */
  public static final class Result {
    public final String errorCode;
    public final String errorMessage;
    public final float[] weights;
    /** The normalized tokens (lemmas) of the document, or -1. */
    public final int tokens;
    /** Of those, the ones outside the vocabulary, or -1. */
    public final int oovTokens;

    Result(String errorCode, String errorMessage, float[] weights, int tokens, int oovTokens) {
      this.errorCode = errorCode;
      this.errorMessage = errorMessage;
      this.weights = weights;
      this.tokens = tokens;
      this.oovTokens = oovTokens;
    }
  }

  /**
   * Return the scorer of a model folder, loaded once per JVM: the local folder, else (an executor on
   * another host) the copy the driver shipped with {@code SparkContext.addArchive} as
   * {@code <folder name>.zip} ({@code ntm_spark.spark.jvm_scoring.ship_model_folder}).
   */
  public static NtmScorer load(String folder) {
    if (folder == null || folder.isEmpty()) {
      throw new IllegalArgumentException("model folder is empty: pass the local path of a registered model folder.");
    }
    return CACHE.computeIfAbsent(folder, f -> {
      try {
        return new NtmScorer(resolveFolder(f));
      } catch (IOException e) {
        throw new UncheckedIOException("cannot load the JVM scorer from " + f + ": " + e.getMessage(), e);
      }
    });
  }

  /** The folder itself when this host has it, else the unpacked archive the driver shipped, else the folder (reported missing). */
  static String resolveFolder(String folder) {
    Path dir = Paths.get(folder);
    if (Files.isDirectory(dir)) {
      return folder;
    }
    Path name = dir.getFileName();
    if (name == null) {
      return folder;
    }
    try {
      Path shipped = Paths.get(org.apache.spark.SparkFiles.get(name + ".zip"));
      if (Files.isRegularFile(shipped.resolve("jvm").resolve("scorer.json"))) {
        return shipped.toString();
      }
    } catch (RuntimeException | LinkageError e) {
      // no SparkEnv (a plain JVM): only the local folder counts
    }
    return folder;
  }

  /** Forget the loaded scorers (tests; a new model version is a new folder anyway). */
  public static void clearCache() {
    CACHE.clear();
  }

  private NtmScorer(String folderName) throws IOException {
    folder = folderName;
    Path dir = Paths.get(folderName);
    Path jvm = dir.resolve("jvm");
    Path scorerFile = jvm.resolve("scorer.json");
    if (!Files.isRegularFile(scorerFile)) {
      throw new IllegalArgumentException(
          "model folder " + dir + " has no jvm/scorer.json: it was registered before the JVM scorer existed, or its "
              + "export failed (see the registration's warning). Register it again with this ntm-spark, or use the "
              + "Python scorer (stream.trigger=processing_time).");
    }
    ObjectMapper json = new ObjectMapper();
    JsonNode scorer = json.readTree(scorerFile.toFile());
    int version = scorer.path("format_version").asInt(-1);
    if (version != FORMAT_VERSION) {
      throw new IllegalArgumentException(
          scorerFile + " has format_version " + version + ", this jar reads " + FORMAT_VERSION
              + ": rebuild the jar (make jars) from the ntm-spark that registered the model, or register it again.");
    }
    for (String w : Files.readString(dir.resolve("vocab.txt"), StandardCharsets.UTF_8).split("\n", -1)) {
      words.add(w);
    }
    if (!words.isEmpty() && words.get(words.size() - 1).isEmpty()) {
      words.remove(words.size() - 1);
    }
    for (int i = 0; i < words.size(); i++) {
      vocab.put(words.get(i), i);
    }
    int featureDim = scorer.path("feature_dim").asInt();
    String sha = sha256(words);
    if (words.size() != featureDim || !sha.equals(scorer.path("vocab_sha256").asText())) {
      throw new IllegalArgumentException(
          "vocab.txt of " + dir + " (" + words.size() + " words, sha256 " + sha + ") is not the vocabulary jvm/scorer.json "
              + "was exported with (" + featureDim + " words): the folder is inconsistent; register the model again.");
    }
    JsonNode text = scorer.path("text_rules");
    Set<String> stop = new HashSet<>();
    text.path("stop_words").forEach(n -> stop.add(n.asText()));
    Map<String, String> overrides = new HashMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = text.path("v2_lemma_overrides").fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      overrides.put(e.getKey(), e.getValue().asText());
    }
    PyUnicode unicode = new PyUnicode(json.readTree(jvm.resolve("unicode.json").toFile()));
    unicodeSource = "Python " + unicode.pythonVersion + ", Unicode " + unicode.unicodeVersion;
    rules = new TextRules(unicode, text.path("rules").asText(), text.path("clean").asBoolean(), stop, readLemmas(json, dir, sha), overrides);
    encoder = new Encoder(jvm, scorer, featureDim, scorer.path("num_topics").asInt());
    scorer.path("topic_words").forEach(t -> {
      List<String> ws = new ArrayList<>();
      t.forEach(w -> ws.add(w.asText()));
      topicWords.add(ws);
    });
  }

  private static Map<String, String> readLemmas(ObjectMapper json, Path dir, String vocabSha) throws IOException {
    Path path = dir.resolve("lemmas.json");
    if (!Files.isRegularFile(path)) {
      throw new IllegalArgumentException(dir + " has no lemmas.json: the JVM scorer needs the registered model's closed lemma table.");
    }
    JsonNode data = json.readTree(path.toFile());
    if (!data.path("closed_over_vocab").asBoolean(false) || !vocabSha.equals(data.path("vocab_sha256").asText())) {
      throw new IllegalArgumentException(
          path + " is not closed over this vocabulary: the JVM scorer has no WordNet; register the model again.");
    }
    Map<String, String> out = new HashMap<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = data.path("lemmas").fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      out.put(e.getKey(), e.getValue().asText());
    }
    return out;
  }

  private static String sha256(List<String> words) {
    try {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      for (String w : words) {
        md.update((w + "\n").getBytes(StandardCharsets.UTF_8));
      }
      StringBuilder sb = new StringBuilder();
      for (byte b : md.digest()) {
        sb.append(String.format("%02x", b));
      }
      return sb.toString();
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  // ------------------------------------------------------------------ facts

  public int numTopics() {
    return encoder.numTopics();
  }

  public int featureDim() {
    return encoder.featureDim();
  }

  public String textRules() {
    return rules.rules;
  }

  /** Where the character tables came from ("Python 3.11.7, Unicode 14.0.0"). */
  public String unicodeSource() {
    return unicodeSource;
  }

  public String folder() {
    return folder;
  }

  // ------------------------------------------------------------------ text

  /** The document's lemmas, as {@code TextNormalizer.normalize} returns them. */
  public List<String> normalize(String text) {
    return rules.normalize(text);
  }

  /** The vocabulary indices of the document's lemmas in order, as {@code Vocabulary.indices_of(normalize(text))}. */
  public int[] vocabIndices(String text) {
    return vocabIndices(rules.normalize(text));
  }

  private int[] vocabIndices(List<String> lemmas) {
    int[] out = new int[lemmas.size()];
    int n = 0;
    for (String l : lemmas) {
      Integer i = vocab.get(l);
      if (i != null) {
        out[n++] = i;
      }
    }
    return java.util.Arrays.copyOf(out, n);
  }

  /** {@code ntm_spark.core.checks.check_text}: the document code, or null. */
  static String[] checkText(String text, long maxTextBytes) {
    if (text == null) {
      return new String[] {"missing_text", "the document has no 'text' value"};
    }
    boolean blank = true;
    for (int i = 0; i < text.length() && blank; i++) {
      char c = text.charAt(i);
      blank = c == ' ' || c == '\t' || c == '\n' || c == 0x0b || c == 0x0c || c == '\r';
    }
    if (blank) {
      return new String[] {"empty_text", "'text' is empty"};
    }
    int codePoints = text.codePointCount(0, text.length());
    if ((long) codePoints * 4 > maxTextBytes && utf8Size(text) > maxTextBytes) {
      return new String[] {"too_large", "'text' is larger than max_text_bytes=" + maxTextBytes};
    }
    int control = 0;
    boolean nul = false;
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (c <= 0x08 || (c >= 0x0e && c <= 0x1f) || (c >= 0x7f && c <= 0x9f)) {
        control++;
        nul |= c == 0;
      }
    }
    if (nul || control > BINARY_CONTROL_FRACTION * codePoints) {
      return new String[] {"binary", "'text' looks binary (a NUL, or over 10% control characters)"};
    }
    return null;
  }

  /** UTF-8 bytes, a lone surrogate counting 3 (Python's surrogatepass). */
  private static long utf8Size(String s) {
    long n = 0;
    for (int i = 0; i < s.length(); ) {
      int cp = s.codePointAt(i);
      n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      i += Character.charCount(cp);
    }
    return n;
  }

  // ------------------------------------------------------------------ scoring

  /** Score one document: {@code TopicScorer.score_texts} for one row. */
  public Result score(String text, long maxTextBytes) {
    String[] problem = checkText(text, maxTextBytes);
    if (problem != null) {
      return new Result(problem[0], problem[1], null, -1, -1);
    }
    List<String> lemmas = rules.normalize(text);
    int[] hits = vocabIndices(lemmas);
    // TopicScorer._vectorize_texts: len(normalized), len(normalized) - len(hits), for every
    // document that passed the checks (empty_after_normalization and nonfinite_weights included).
    int tokens = lemmas.size();
    int oov = lemmas.size() - hits.length;
    if (hits.length == 0) {
      return new Result("empty_after_normalization", "no vocabulary word is left after normalization", null, tokens, oov);
    }
    java.util.Arrays.sort(hits);
    int distinct = 0;
    int[] idx = new int[hits.length];
    float[] counts = new float[hits.length];
    for (int i = 0; i < hits.length; i++) {
      if (distinct > 0 && idx[distinct - 1] == hits[i]) {
        counts[distinct - 1] += 1f;
      } else {
        idx[distinct] = hits[i];
        counts[distinct] = 1f;
        distinct++;
      }
    }
    double[] w = encoder.inferTopics(java.util.Arrays.copyOf(idx, distinct), java.util.Arrays.copyOf(counts, distinct));
    float[] out = new float[w.length];
    double sum = 0;
    boolean finite = true;
    for (int i = 0; i < w.length; i++) {
      out[i] = (float) w[i];
      sum += out[i];
      finite &= Float.isFinite(out[i]);
    }
    if (!finite || Math.abs(sum - 1.0) > WEIGHTS_SUM_TOLERANCE) {
      return new Result(
          "nonfinite_weights",
          "the model gave weights that are not finite or do not sum to 1 for this row: send smaller counts (or report the model)",
          null,
          tokens,
          oov);
    }
    return new Result(null, null, out, tokens, oov);
  }

  /** The {@code k} heaviest topics: descending weight, the lower index first among equals. */
  public int[] topTopics(float[] weights, int k) {
    Integer[] order = new Integer[weights.length];
    for (int i = 0; i < order.length; i++) {
      order[i] = i;
    }
    java.util.Arrays.sort(order, (a, b) -> weights[a] != weights[b] ? Float.compare(weights[b], weights[a]) : Integer.compare(a, b));
    int n = Math.min(k, order.length);
    int[] out = new int[Math.max(n, 0)];
    for (int i = 0; i < out.length; i++) {
      out[i] = order[i];
    }
    return out;
  }

  /** A topic's first {@code n} top words ({@code topic_words} of the export). */
  public List<String> topicWords(int topic, int n) {
    if (topic >= topicWords.size()) {
      return new ArrayList<>();
    }
    List<String> ws = topicWords.get(topic);
    return new ArrayList<>(ws.subList(0, Math.min(n, ws.size())));
  }
}
