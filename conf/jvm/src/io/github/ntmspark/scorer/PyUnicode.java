package io.github.ntmspark.scorer;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.BitSet;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;

/**
 * Python's Unicode character classes and {@code str.lower()}, from the tables the registering
 * Python wrote ({@code jvm/unicode.json}, {@code ntm_spark.core.text.unicode_tables}).
 *
 * <p>Java's own classes differ from Python's: Java's {@code \w} (with UNICODE_CHARACTER_SET)
 * takes combining marks, Python's does not; Python's {@code \s} takes U+001C..U+001F; and the two
 * runtimes follow different Unicode versions. Reading Python's tables makes the tokens identical.
 * Code points are what Python counts; Java strings are UTF-16, so every loop here walks code points.
 */
final class PyUnicode {
  private static final int SIGMA = 0x3A3;
  private final BitSet word;
  private final BitSet space;
  private final BitSet alpha;
  private final BitSet digit;
  private final BitSet alnum;
  private final BitSet cased;
  private final BitSet caseIgnorable;
  private final Map<Integer, String> lower = new HashMap<>();
  final String pythonVersion;
  final String unicodeVersion;

  PyUnicode(JsonNode tables) {
    word = ranges(tables, "word");
    space = ranges(tables, "space");
    alpha = ranges(tables, "alpha");
    digit = ranges(tables, "digit");
    alnum = ranges(tables, "alnum");
    cased = ranges(tables, "cased");
    caseIgnorable = ranges(tables, "case_ignorable");
    JsonNode low = tables.get("lower");
    if (low == null || !low.isObject()) {
      throw new IllegalArgumentException("unicode.json has no 'lower' table: register the model again to rewrite jvm/.");
    }
    for (Iterator<Map.Entry<String, JsonNode>> it = low.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      lower.put(Integer.parseInt(e.getKey()), e.getValue().asText());
    }
    pythonVersion = tables.path("python").asText("?");
    unicodeVersion = tables.path("unicode_version").asText("?");
  }

  private static BitSet ranges(JsonNode tables, String name) {
    JsonNode r = tables.get(name);
    if (r == null || !r.isArray() || r.size() % 2 != 0) {
      throw new IllegalArgumentException(
          "unicode.json has no valid '" + name + "' ranges: register the model again to rewrite jvm/.");
    }
    BitSet set = new BitSet(0x110000);
    for (int i = 0; i < r.size(); i += 2) {
      set.set(r.get(i).asInt(), r.get(i + 1).asInt());
    }
    return set;
  }

  /** Python re's {@code \w}: {@code str.isalnum()} or {@code _}. */
  boolean isWord(int cp) {
    return word.get(cp);
  }

  /** Python re's {@code \s}, which is {@code str.isspace()}. */
  boolean isSpace(int cp) {
    return space.get(cp);
  }

  boolean isAlpha(int cp) {
    return alpha.get(cp);
  }

  boolean isDigit(int cp) {
    return digit.get(cp);
  }

  boolean isAlnum(int cp) {
    return alnum.get(cp);
  }

  /** Python's {@code str.lower()}: full case mapping, and the final-sigma rule for U+03A3. */
  String lower(String s) {
    StringBuilder out = null;
    int n = s.length();
    for (int i = 0; i < n; ) {
      int cp = s.codePointAt(i);
      int next = i + Character.charCount(cp);
      String mapped;
      if (cp == SIGMA) {
        mapped = finalSigma(s, i, next) ? "\u03c2" : "\u03c3";
      } else {
        mapped = lower.get(cp);
      }
      if (mapped != null && out == null) {
        out = new StringBuilder(n + 8);
        out.append(s, 0, i);
      }
      if (out != null) {
        if (mapped != null) {
          out.append(mapped);
        } else {
          out.appendCodePoint(cp);
        }
      }
      i = next;
    }
    return out == null ? s : out.toString();
  }

  /** CPython's handle_capital_sigma: cased, case-ignorable*, SIGMA, not (case-ignorable*, cased). */
  private boolean finalSigma(String s, int at, int after) {
    int j = at;
    int c = -1;
    while (j > 0) {
      c = s.codePointBefore(j);
      j -= Character.charCount(c);
      if (!caseIgnorable.get(c)) {
        break;
      }
      c = -1;
    }
    if (c < 0 || !cased.get(c)) {
      return false;
    }
    j = after;
    while (j < s.length()) {
      c = s.codePointAt(j);
      if (!caseIgnorable.get(c)) {
        return !cased.get(c);
      }
      j += Character.charCount(c);
    }
    return true;
  }

  /** Python's {@code len()}: code points. */
  static int length(String s) {
    return s.codePointCount(0, s.length());
  }

  /** Python's {@code s.strip()} (str.isspace characters at both ends). */
  String strip(String s) {
    int start = 0;
    int end = s.length();
    while (start < end) {
      int cp = s.codePointAt(start);
      if (!space.get(cp)) {
        break;
      }
      start += Character.charCount(cp);
    }
    while (end > start) {
      int cp = s.codePointBefore(end);
      if (!space.get(cp)) {
        break;
      }
      end -= Character.charCount(cp);
    }
    return s.substring(start, end);
  }
}
