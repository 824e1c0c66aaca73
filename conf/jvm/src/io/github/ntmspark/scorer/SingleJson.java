package io.github.ntmspark.scorer;

/**
 * {@code ntm_spark.spark.streaming.check_single_json} for the values Spark already parsed as a
 * JSON object: whether the value holds more than that one object (trailing data), which Spark's
 * {@code try_parse_json} ignores. The object's end is found by matching braces outside strings.
 */
public final class SingleJson {
  /** Python's {@code str.isspace()} code points, as {@code [start, end)} ranges (stable since Unicode 6). */
  static final int[] PYTHON_SPACE = {
    0x09, 0x0e, 0x1c, 0x21, 0x85, 0x86, 0xa0, 0xa1, 0x1680, 0x1681, 0x2000, 0x200b, 0x2028, 0x202a, 0x202f, 0x2030,
    0x205f, 0x2060, 0x3000, 0x3001,
  };

  private SingleJson() {}

  /** The ranges above, for the test that pins them to Python's. */
  public static int[] pythonSpaceRanges() {
    return PYTHON_SPACE.clone();
  }

  static boolean isPythonSpace(int cp) {
    for (int i = 0; i < PYTHON_SPACE.length; i += 2) {
      if (cp < PYTHON_SPACE[i]) {
        return false;
      }
      if (cp < PYTHON_SPACE[i + 1]) {
        return true;
      }
    }
    return false;
  }

  /** Why {@code raw} is not exactly one JSON object, or null when it is (or is not one at all: Spark said so already). */
  public static String check(String raw) {
    if (raw == null) {
      return null;
    }
    int n = raw.length();
    int i = 0;
    while (i < n && isPythonSpace(raw.codePointAt(i))) {
      i += Character.charCount(raw.codePointAt(i));
    }
    if (i >= n || raw.charAt(i) != '{') {
      return null;
    }
    int depth = 0;
    boolean inString = false;
    int end = -1;
    for (; i < n; i++) {
      char c = raw.charAt(i);
      if (inString) {
        if (c == '\\') {
          i++;
        } else if (c == '"') {
          inString = false;
        }
      } else if (c == '"') {
        inString = true;
      } else if (c == '{' || c == '[') {
        depth++;
      } else if (c == '}' || c == ']') {
        depth--;
        if (depth == 0) {
          end = i + 1;
          break;
        }
      }
    }
    if (end < 0) {
      return "the message value is not valid JSON (the object is not closed)";
    }
    int restStart = end;
    int restEnd = n;
    while (restStart < restEnd && isPythonSpace(raw.codePointAt(restStart))) {
      restStart += Character.charCount(raw.codePointAt(restStart));
    }
    while (restEnd > restStart && isPythonSpace(raw.codePointBefore(restEnd))) {
      restEnd -= Character.charCount(raw.codePointBefore(restEnd));
    }
    if (restStart == restEnd) {
      return null;
    }
    return "the message value has " + raw.codePointCount(restStart, restEnd)
        + " characters of trailing data after its JSON object (at character " + raw.codePointCount(0, end) + ")";
  }
}
