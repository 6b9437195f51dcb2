package dev.kiln.core.encoder;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.spi.KilnException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.text.Normalizer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * BERT's uncased WordPiece tokenizer, configured from a Hugging Face {@code tokenizer.json}.
 *
 * <p>Follows the Hugging Face pipeline: BertNormalizer (drop control characters, map white space to a space, pad CJK
 * ideographs with spaces, NFD accent stripping, lower-casing), BertPreTokenizer (split on white space, isolate every
 * punctuation character), then greedy longest-match WordPiece with the {@code ##} continuation prefix, where a word
 * with any unmatched piece becomes {@code [UNK]}. Sequences get {@code [CLS] ... [SEP]}, are truncated to the
 * maximum length, and a batch is right-padded to its longest member. Special-token strings typed inside the text
 * (e.g. a literal "[MASK]") are tokenized as ordinary text.
 */
public final class WordPieceTokenizer {
    private final Map<String, Integer> vocab;
    private final String unk;
    private final String prefix;
    private final int maxCharsPerWord;
    private final boolean lowercase;
    private final boolean stripAccents;
    private final boolean chineseChars;
    private final boolean cleanText;
    private final int maxLength;
    private final long clsId;
    private final long sepId;
    private final long padId;
    private final long unkId;

    private WordPieceTokenizer(JsonNode root, String source, int maxLength) {
        JsonNode model = root.path("model");
        if (!"WordPiece".equals(model.path("type").asText())) {
            throw new KilnException("tokenizer " + source + ": model.type is '" + model.path("type").asText()
                    + "', only WordPiece is supported");
        }
        JsonNode v = model.path("vocab");
        if (!v.isObject() || v.size() == 0) {
            throw new KilnException("tokenizer " + source + ": model.vocab is missing or empty");
        }
        vocab = new HashMap<>(v.size() * 2);
        for (Iterator<Map.Entry<String, JsonNode>> it = v.fields(); it.hasNext();) {
            Map.Entry<String, JsonNode> e = it.next();
            vocab.put(e.getKey(), e.getValue().asInt());
        }
        unk = model.path("unk_token").asText("[UNK]");
        prefix = model.path("continuing_subword_prefix").asText("##");
        maxCharsPerWord = model.path("max_input_chars_per_word").asInt(100);
        JsonNode norm = root.path("normalizer");
        lowercase = norm.path("lowercase").asBoolean(true);
        // strip_accents null means "follow lowercase", as in BERT's original code.
        JsonNode strip = norm.path("strip_accents");
        stripAccents = strip.isBoolean() ? strip.asBoolean() : lowercase;
        chineseChars = norm.path("handle_chinese_chars").asBoolean(true);
        cleanText = norm.path("clean_text").asBoolean(true);
        int fileMax = root.path("truncation").path("max_length").asInt(512);
        this.maxLength = maxLength > 0 ? maxLength : fileMax;
        if (this.maxLength < 2) {
            throw new KilnException("tokenizer maxLength must be at least 2 (for [CLS] and [SEP]), got "
                    + this.maxLength);
        }
        clsId = id(source, "[CLS]");
        sepId = id(source, "[SEP]");
        padId = id(source, "[PAD]");
        unkId = id(source, unk);
    }

    private long id(String source, String token) {
        Integer id = vocab.get(token);
        if (id == null) {
            throw new KilnException("tokenizer " + source + ": vocabulary has no '" + token + "' token");
        }
        return id;
    }

    /** Loads a tokenizer.json, keeping its truncation length (512 if it has none). */
    public static WordPieceTokenizer fromJson(Path file) {
        return fromJson(file, 0);
    }

    /** Loads a tokenizer.json with the given maximum sequence length (0: the file's own). */
    public static WordPieceTokenizer fromJson(Path file, int maxLength) {
        try (InputStream in = Files.newInputStream(file)) {
            return fromJson(in, file.toString(), maxLength);
        } catch (IOException e) {
            throw new KilnException("could not read tokenizer " + file + ": " + e.getMessage(), e);
        }
    }

    /** Loads a tokenizer.json from a stream (not closed here); {@code source} names it in errors. */
    public static WordPieceTokenizer fromJson(InputStream in, String source, int maxLength) {
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(in);
        } catch (IOException e) {
            throw new KilnException("tokenizer " + source + " is not valid JSON: " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new KilnException("tokenizer " + source + " is not a JSON object");
        }
        return new WordPieceTokenizer(root, source, maxLength);
    }

    /** Maximum tokens per sequence, special tokens included. */
    public int maxLength() {
        return maxLength;
    }

    /** Vocabulary size. */
    public int vocabSize() {
        return vocab.size();
    }

    /** The id of a vocabulary token, or -1. */
    public int tokenId(String token) {
        return vocab.getOrDefault(token, -1);
    }

    /** WordPiece tokens of {@code text}, without special tokens or truncation. */
    public List<String> tokenize(String text) {
        List<String> out = new ArrayList<>();
        for (String word : preTokenize(normalize(text))) {
            wordPiece(word, out);
        }
        return out;
    }

    /** Ids of {@code [CLS] text [SEP]}, truncated to {@link #maxLength()}. */
    public long[] encode(String text) {
        List<String> tokens = tokenize(text);
        int n = Math.min(tokens.size(), maxLength - 2);
        long[] ids = new long[n + 2];
        ids[0] = clsId;
        for (int i = 0; i < n; i++) {
            ids[i + 1] = vocab.get(tokens.get(i));
        }
        ids[n + 1] = sepId;
        return ids;
    }

    /** Encodes each text and right-pads the batch to its longest sequence. */
    public TokenizedBatch encodeBatch(List<String> texts) {
        if (texts.isEmpty()) {
            throw new KilnException("cannot tokenize an empty batch of texts");
        }
        long[][] seqs = new long[texts.size()][];
        int longest = 0;
        for (int i = 0; i < seqs.length; i++) {
            if (texts.get(i) == null) {
                throw new KilnException("text " + i + " of the batch is null");
            }
            seqs[i] = encode(texts.get(i));
            longest = Math.max(longest, seqs[i].length);
        }
        long[][] ids = new long[seqs.length][longest];
        long[][] mask = new long[seqs.length][longest];
        long[][] types = new long[seqs.length][longest];
        for (int i = 0; i < seqs.length; i++) {
            java.util.Arrays.fill(ids[i], padId);
            System.arraycopy(seqs[i], 0, ids[i], 0, seqs[i].length);
            java.util.Arrays.fill(mask[i], 0, seqs[i].length, 1L);
        }
        return new TokenizedBatch(ids, mask, types);
    }

    String normalize(String text) {
        StringBuilder sb = new StringBuilder(text.length() + 16);
        text.codePoints().forEach(cp -> {
            if (cleanText) {
                if (cp == 0 || cp == 0xFFFD || isControl(cp)) {
                    return;
                }
                if (isWhitespace(cp)) {
                    sb.append(' ');
                    return;
                }
            }
            if (chineseChars && isCjk(cp)) {
                sb.append(' ').appendCodePoint(cp).append(' ');
            } else {
                sb.appendCodePoint(cp);
            }
        });
        String s = sb.toString();
        if (stripAccents) {
            StringBuilder stripped = new StringBuilder(s.length());
            Normalizer.normalize(s, Normalizer.Form.NFD).codePoints().forEach(cp -> {
                if (Character.getType(cp) != Character.NON_SPACING_MARK) {
                    stripped.appendCodePoint(cp);
                }
            });
            s = stripped.toString();
        }
        return lowercase ? s.toLowerCase(Locale.ROOT) : s;
    }

    static List<String> preTokenize(String text) {
        List<String> words = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        text.codePoints().forEach(cp -> {
            if (isWhitespace(cp)) {
                flush(cur, words);
            } else if (isPunctuation(cp)) {
                flush(cur, words);
                words.add(new String(Character.toChars(cp)));
            } else {
                cur.appendCodePoint(cp);
            }
        });
        flush(cur, words);
        return words;
    }

    private static void flush(StringBuilder cur, List<String> words) {
        if (cur.length() > 0) {
            words.add(cur.toString());
            cur.setLength(0);
        }
    }

    private void wordPiece(String word, List<String> out) {
        if (word.codePointCount(0, word.length()) > maxCharsPerWord) {
            out.add(unk);
            return;
        }
        List<String> pieces = new ArrayList<>();
        int start = 0;
        while (start < word.length()) {
            int end = word.length();
            String match = null;
            while (end > start) {
                String piece = word.substring(start, end);
                if (start > 0) {
                    piece = prefix + piece;
                }
                if (vocab.containsKey(piece)) {
                    match = piece;
                    break;
                }
                // Step back a whole code point so a piece never ends inside a surrogate pair.
                end -= Character.isLowSurrogate(word.charAt(end - 1)) && end - 2 >= start ? 2 : 1;
            }
            if (match == null) {
                out.add(unk);
                return;
            }
            pieces.add(match);
            start = end;
        }
        out.addAll(pieces);
    }

    private static boolean isControl(int cp) {
        if (cp == '\t' || cp == '\n' || cp == '\r') {
            return false;
        }
        int t = Character.getType(cp);
        return t == Character.CONTROL || t == Character.FORMAT || t == Character.PRIVATE_USE
                || t == Character.UNASSIGNED;
    }

    private static boolean isWhitespace(int cp) {
        return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r'
                || Character.getType(cp) == Character.SPACE_SEPARATOR || Character.isWhitespace(cp);
    }

    private static boolean isPunctuation(int cp) {
        if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) {
            return true;
        }
        int t = Character.getType(cp);
        return t == Character.CONNECTOR_PUNCTUATION || t == Character.DASH_PUNCTUATION
                || t == Character.START_PUNCTUATION || t == Character.END_PUNCTUATION
                || t == Character.INITIAL_QUOTE_PUNCTUATION || t == Character.FINAL_QUOTE_PUNCTUATION
                || t == Character.OTHER_PUNCTUATION;
    }

    private static boolean isCjk(int cp) {
        return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF)
                || (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F)
                || (cp >= 0x2B820 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF)
                || (cp >= 0x2F800 && cp <= 0x2FA1F);
    }
}
