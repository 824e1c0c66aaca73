package io.github.ntmspark.scorer;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The NTM encoder's forward pass in eval mode, {@code NTMModel.infer_topics}: {@code softmax(mu)}.
 *
 * <p>The layers come from {@code jvm/scorer.json} in the order {@code NTMModel.encode} applies
 * them: linear, batch norm (running statistics), activation, ..., then {@code mu} and its batch
 * norm. Arithmetic is in double: the result differs from torch's float32 by rounding only. The
 * first layer takes the sparse counts directly (a document has few distinct words).
 */
final class Encoder {
  private static final Pattern NPY_DESCR = Pattern.compile("'descr':\\s*'([^']*)'");
  private static final Pattern NPY_ORDER = Pattern.compile("'fortran_order':\\s*(True|False)");
  private static final Pattern NPY_SHAPE = Pattern.compile("'shape':\\s*\\(([^)]*)\\)");

  private interface Layer {
    double[] apply(double[] x);
  }

  private final boolean log1p;
  private final int featureDim;
  private final int numTopics;
  /** The first linear layer, transposed: (V, H), so one word's column is contiguous. */
  private final float[] firstWeightT;
  private final float[] firstBias;
  private final int firstOut;
  private final List<Layer> rest = new ArrayList<>();

  Encoder(Path dir, JsonNode scorer, int featureDim, int numTopics) throws IOException {
    this.featureDim = featureDim;
    this.numTopics = numTopics;
    String input = scorer.path("encoder_input").asText();
    if (!input.equals("counts") && !input.equals("log1p")) {
      throw new IllegalArgumentException(
          "encoder_input='" + input + "' in " + dir.resolve("scorer.json") + ": the JVM scorer has 'counts' and 'log1p'.");
    }
    log1p = input.equals("log1p");
    JsonNode layers = scorer.path("layers");
    if (!layers.isArray() || layers.size() == 0 || !layers.get(0).path("kind").asText().equals("linear")) {
      throw new IllegalArgumentException("the layers in " + dir.resolve("scorer.json") + " must start with a linear layer.");
    }
    JsonNode first = layers.get(0);
    firstOut = first.path("out").asInt();
    if (first.path("in").asInt() != featureDim) {
      throw new IllegalArgumentException(
          "the first layer takes " + first.path("in").asInt() + " inputs but feature_dim is " + featureDim + ".");
    }
    float[] w = readNpy(dir.resolve(first.path("weight").asText()), firstOut, featureDim);
    firstWeightT = new float[w.length];
    for (int o = 0; o < firstOut; o++) {
      for (int v = 0; v < featureDim; v++) {
        firstWeightT[v * firstOut + o] = w[o * featureDim + v];
      }
    }
    firstBias = readNpy(dir.resolve(first.path("bias").asText()), firstOut);
    int width = firstOut;
    for (int i = 1; i < layers.size(); i++) {
      JsonNode l = layers.get(i);
      String kind = l.path("kind").asText();
      switch (kind) {
        case "linear": {
          int in = l.path("in").asInt();
          int out = l.path("out").asInt();
          if (in != width) {
            throw new IllegalArgumentException("layer " + i + " takes " + in + " inputs after a layer of " + width + ".");
          }
          rest.add(linear(readNpy(dir.resolve(l.path("weight").asText()), out, in), readNpy(dir.resolve(l.path("bias").asText()), out), in, out));
          width = out;
          break;
        }
        case "batch_norm": {
          int size = l.path("size").asInt();
          if (size != width) {
            throw new IllegalArgumentException("batch norm layer " + i + " has " + size + " features after a layer of " + width + ".");
          }
          float[] mean = readNpy(dir.resolve(l.path("running_mean").asText()), size);
          float[] var = readNpy(dir.resolve(l.path("running_var").asText()), size);
          float[] gamma = l.has("weight") ? readNpy(dir.resolve(l.path("weight").asText()), size) : null;
          float[] beta = l.has("bias") ? readNpy(dir.resolve(l.path("bias").asText()), size) : null;
          rest.add(batchNorm(mean, var, l.path("eps").asDouble(1e-5), gamma, beta));
          break;
        }
        case "activation":
          rest.add(activation(l.path("name").asText()));
          break;
        default:
          throw new IllegalArgumentException("layer " + i + " has kind '" + kind + "', which the JVM scorer does not implement.");
      }
    }
    if (width != numTopics) {
      throw new IllegalArgumentException("the encoder ends with " + width + " outputs but num_topics is " + numTopics + ".");
    }
  }

  /** Topic weights for one document's sparse counts (vocabulary indices, count each). */
  double[] inferTopics(int[] indices, float[] counts) {
    double[] h = new double[firstOut];
    for (int o = 0; o < firstOut; o++) {
      h[o] = firstBias[o];
    }
    for (int k = 0; k < indices.length; k++) {
      double x = log1p ? Math.log1p(counts[k]) : counts[k];
      int base = indices[k] * firstOut;
      for (int o = 0; o < firstOut; o++) {
        h[o] += firstWeightT[base + o] * x;
      }
    }
    for (Layer layer : rest) {
      h = layer.apply(h);
    }
    // softmax(mu)
    double max = Double.NEGATIVE_INFINITY;
    for (double v : h) {
      max = Math.max(max, v);
    }
    double sum = 0;
    double[] out = new double[h.length];
    for (int i = 0; i < h.length; i++) {
      out[i] = Math.exp(h[i] - max);
      sum += out[i];
    }
    for (int i = 0; i < h.length; i++) {
      out[i] /= sum;
    }
    return out;
  }

  int numTopics() {
    return numTopics;
  }

  int featureDim() {
    return featureDim;
  }

  private static Layer linear(float[] w, float[] b, int in, int out) {
    return x -> {
      double[] y = new double[out];
      for (int o = 0; o < out; o++) {
        double s = b[o];
        int base = o * in;
        for (int i = 0; i < in; i++) {
          s += w[base + i] * x[i];
        }
        y[o] = s;
      }
      return y;
    };
  }

  private static Layer batchNorm(float[] mean, float[] var, double eps, float[] gamma, float[] beta) {
    return x -> {
      double[] y = new double[x.length];
      for (int i = 0; i < x.length; i++) {
        double v = (x[i] - mean[i]) / Math.sqrt(var[i] + eps);
        if (gamma != null) {
          v = v * gamma[i] + beta[i];
        }
        y[i] = v;
      }
      return y;
    };
  }

  private static Layer activation(String name) {
    switch (name) {
      case "sigmoid":
        return x -> map(x, v -> 1.0 / (1.0 + Math.exp(-v)));
      case "tanh":
        return x -> map(x, Math::tanh);
      case "relu":
        return x -> map(x, v -> v > 0 ? v : 0.0);
      case "softplus": // torch: beta 1, threshold 20 (linear above it)
        return x -> map(x, v -> v > 20.0 ? v : Math.log1p(Math.exp(v)));
      default:
        throw new IllegalArgumentException("activation '" + name + "' is not one the JVM scorer implements (sigmoid, tanh, relu, softplus).");
    }
  }

  private static double[] map(double[] x, java.util.function.DoubleUnaryOperator f) {
    double[] y = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      y[i] = f.applyAsDouble(x[i]);
    }
    return y;
  }

  /** Read a little-endian float32, C-order {@code .npy} file and check its shape. */
  static float[] readNpy(Path path, int... shape) throws IOException {
    byte[] bytes = Files.readAllBytes(path);
    if (bytes.length < 10 || (bytes[0] & 0xff) != 0x93 || !new String(bytes, 1, 5, StandardCharsets.US_ASCII).equals("NUMPY")) {
      throw new IOException(path + " is not a .npy file: register the model again to rewrite jvm/.");
    }
    int major = bytes[6];
    int headerLen;
    int offset;
    ByteBuffer bb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    if (major == 1) {
      headerLen = bb.getShort(8) & 0xffff;
      offset = 10;
    } else {
      headerLen = bb.getInt(8);
      offset = 12;
    }
    String header = new String(bytes, offset, headerLen, StandardCharsets.ISO_8859_1);
    Matcher descr = NPY_DESCR.matcher(header);
    Matcher order = NPY_ORDER.matcher(header);
    Matcher dims = NPY_SHAPE.matcher(header);
    if (!descr.find() || !descr.group(1).equals("<f4") || !order.find() || order.group(1).equals("True") || !dims.find()) {
      throw new IOException(path + " must hold a little-endian float32 C-order array ('<f4'), its header is " + header.trim());
    }
    List<Integer> got = new ArrayList<>();
    for (String d : dims.group(1).split(",")) {
      if (!d.trim().isEmpty()) {
        got.add(Integer.parseInt(d.trim()));
      }
    }
    List<Integer> want = new ArrayList<>();
    long n = 1;
    for (int s : shape) {
      want.add(s);
      n *= s;
    }
    if (!got.equals(want)) {
      throw new IOException(path + " has shape " + got + ", the scorer expects " + want + ".");
    }
    int data = offset + headerLen;
    if (bytes.length - data != n * 4) {
      throw new IOException(path + " holds " + (bytes.length - data) + " bytes of data, " + (n * 4) + " expected: it is truncated.");
    }
    float[] out = new float[(int) n];
    bb.position(data);
    bb.asFloatBuffer().get(out);
    return out;
  }
}
