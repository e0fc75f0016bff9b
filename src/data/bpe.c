/* GPT-2's byte-level BPE (ember/bpe.h): vocab.json read with cJSON, merges.txt line by
 * line, two open-addressing tables (token text -> id, symbol pair -> merge), and the
 * pre-tokenizer written out as the alternatives of GPT-2's pattern tried in order. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/unicode_classes.h"
#include "ember/bpe.h"
#include "ember/error.h"

#define MAX_FILE_BYTES (INT64_C(1) << 28)
#define MAX_ID ((1 << 24) - 1)
#define NO_ID (-1)
#define STAND_INS (256 + 68) /* the code points GPT-2's byte stand-ins use */

typedef struct merge_slot {
    uint64_t pair;   /* (left << 32) | right, 0 for an empty slot (id pairs are offset by 1) */
    int32_t rank, result;
} merge_slot;

struct em_bpe {
    int64_t vocab_size;      /* largest id + 1 */
    char **tokens;           /* by id: the text as in vocab.json, NULL for gaps */
    char **token_bytes;      /* by id: the bytes it stands for */
    size_t *token_len;
    int32_t *token_slots;    /* text -> id table: ids, NO_ID for empty */
    int64_t token_cap;       /* a power of two */
    merge_slot *merges;
    int64_t merge_cap, merge_count;
    int32_t byte_token[256]; /* the single-byte token of each byte */
    int16_t byte_of[STAND_INS]; /* stand-in code point -> byte, -1 for none */
    int32_t end_of_text;     /* the id of <|endoftext|>, NO_ID when the vocabulary has none */
};

/* GPT-2's one special token: written in a text, it is that token, not its characters
 * (as Hugging Face's tokenizer reads it). */
static const char END_OF_TEXT[] = "<|endoftext|>";
#define END_OF_TEXT_LEN (sizeof END_OF_TEXT - 1)

/* ---- GPT-2's printable stand-ins for bytes --------------------------------------- */

/* Bytes that print (! to ~, ¡ to ¬, ® to ÿ) stand for themselves; the other 68 map to
 * U+0100 onwards in byte order. */
static bool byte_prints(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

static uint32_t byte_to_cp(int byte)
{
    if (byte_prints(byte))
        return (uint32_t)byte;
    uint32_t n = 0;
    for (int b = 0; b < byte; b++)
        n += !byte_prints(b);
    return 256 + n;
}

/* The byte each stand-in code point means, or -1. */
static void stand_in_bytes(int16_t *byte_of)
{
    for (int cp = 0; cp < STAND_INS; cp++)
        byte_of[cp] = -1;
    for (int b = 0; b < 256; b++)
        byte_of[byte_to_cp(b)] = (int16_t)b;
}

/* ---- UTF-8 ----------------------------------------------------------------------- */

/* The code point at s[0..len): its length in *n (1 for an invalid byte, whose code
 * point is returned as UINT32_MAX). */
static uint32_t utf8_next(const unsigned char *s, size_t len, size_t *n)
{
    unsigned c = s[0];
    *n = 1;
    if (c < 0x80)
        return c;
    int extra = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
    if (extra < 0 || (size_t)extra + 1 > len)
        return UINT32_MAX;
    uint32_t cp = c & (0x7F >> extra);
    for (int k = 1; k <= extra; k++) {
        if ((s[k] & 0xC0) != 0x80)
            return UINT32_MAX;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return UINT32_MAX;
    *n = (size_t)extra + 1;
    return cp;
}

static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- tables -------------------------------------------------------------------------- */

static uint64_t hash_text(const char *s)
{
    uint64_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static uint64_t hash_pair(uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdu;
    key ^= key >> 33;
    return key;
}

static int64_t power_of_two_above(int64_t n)
{
    int64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    return cap;
}

/* The slot of `text` in the token table: the id there, or NO_ID where it would go. */
static int64_t token_slot(const em_bpe *b, const char *text)
{
    int64_t mask = b->token_cap - 1, i = (int64_t)(hash_text(text) & (uint64_t)mask);
    while (b->token_slots[i] != NO_ID && strcmp(b->tokens[b->token_slots[i]], text) != 0)
        i = (i + 1) & mask;
    return i;
}

int32_t em_bpe_find(const em_bpe *b, const char *token)
{
    return b && token ? b->token_slots[token_slot(b, token)] : NO_ID;
}

static uint64_t pair_key(int32_t left, int32_t right) { return ((uint64_t)(left + 1) << 32) | (uint32_t)(right + 1); }

static merge_slot *merge_find(const em_bpe *b, int32_t left, int32_t right)
{
    uint64_t key = pair_key(left, right);
    int64_t mask = b->merge_cap - 1, i = (int64_t)(hash_pair(key) & (uint64_t)mask);
    while (b->merges[i].pair && b->merges[i].pair != key)
        i = (i + 1) & mask;
    return &b->merges[i];
}

/* ---- loading ------------------------------------------------------------------------ */

static char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        em_error("%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 65536 + 1 > cap) {
            cap = cap ? 2 * cap : 1 << 20;
            char *grown = (int64_t)cap <= MAX_FILE_BYTES ? realloc(buf, cap) : NULL;
            if (!grown) {
                em_error("%s: %s", path, (int64_t)cap > MAX_FILE_BYTES ? "larger than 256 MiB" : "out of memory");
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        em_error("%s: read error", path);
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    *size = len;
    return buf;
}

/* The bytes a token's text stands for: each stand-in code point its byte, anything else
 * (special tokens' characters beyond the stand-ins) its own UTF-8. */
static int token_to_bytes(const em_bpe *b, const char *text, char **out, size_t *len)
{
    size_t n = strlen(text), k = 0;
    char *bytes = malloc(n + 1);
    if (!bytes)
        return em_error("out of memory");
    for (size_t i = 0; i < n;) {
        size_t step;
        uint32_t cp = utf8_next((const unsigned char *)text + i, n - i, &step);
        int byte = cp < STAND_INS ? b->byte_of[cp] : -1;
        if (byte >= 0) {
            bytes[k++] = (char)byte;
        } else {
            memcpy(bytes + k, text + i, step);
            k += step;
        }
        i += step;
    }
    *out = bytes;
    *len = k;
    return EM_OK;
}

static const char *json_kind(const cJSON *v)
{
    return cJSON_IsObject(v) ? "an object" : cJSON_IsArray(v) ? "an array" : cJSON_IsString(v) ? "a string"
         : cJSON_IsNumber(v) ? "a number" : cJSON_IsBool(v) ? "a boolean" : "null";
}

static void line_col(const char *text, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

static int load_vocab(em_bpe *b, const char *path)
{
    size_t size;
    char *text = read_file(path, &size);
    if (!text)
        return EM_ERR;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, true);
    int status = EM_OK;
    if (!root) {
        int line, col;
        line_col(text, end ? end : text, &line, &col);
        status = em_error("%s:%d:%d: not valid JSON (vocab.json is an object of \"token\": id pairs)", path, line, col);
        goto done;
    }
    if (!cJSON_IsObject(root) || !root->child) {
        status = em_error("%s: expected an object of \"token\": id pairs, got %s", path,
                          cJSON_IsObject(root) ? "an empty object" : json_kind(root));
        goto done;
    }
    int64_t count = 0, max_id = -1, entry = 0;
    for (const cJSON *e = root->child; e; e = e->next, entry++) {
        count++;
        double v = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!cJSON_IsNumber(e) || v < 0 || v > MAX_ID || v != (double)(int64_t)v) {
            char shown[64] = "";
            if (cJSON_IsNumber(e))
                snprintf(shown, sizeof shown, " %g", v);
            status = em_error("%s: entry %lld (\"%.60s\"): the id must be an integer from 0 to %d, got %s%s", path,
                              (long long)entry + 1, e->string, MAX_ID, json_kind(e), shown);
            goto done;
        }
        max_id = (int64_t)v > max_id ? (int64_t)v : max_id;
    }
    b->vocab_size = max_id + 1;
    stand_in_bytes(b->byte_of);
    b->token_cap = power_of_two_above(count);
    b->tokens = calloc((size_t)b->vocab_size, sizeof *b->tokens);
    b->token_bytes = calloc((size_t)b->vocab_size, sizeof *b->token_bytes);
    b->token_len = calloc((size_t)b->vocab_size, sizeof *b->token_len);
    b->token_slots = malloc((size_t)b->token_cap * sizeof *b->token_slots);
    if (!b->tokens || !b->token_bytes || !b->token_len || !b->token_slots) {
        status = em_error("%s: out of memory", path);
        goto done;
    }
    for (int64_t i = 0; i < b->token_cap; i++)
        b->token_slots[i] = NO_ID;
    entry = 0;
    for (const cJSON *e = root->child; e; e = e->next, entry++) {
        int32_t id = (int32_t)e->valuedouble;
        if (!e->string[0]) {
            status = em_error("%s: entry %lld (id %d): the token is empty", path, (long long)entry + 1, (int)id);
            goto done;
        }
        if (b->tokens[id]) {
            status = em_error("%s: entry %lld: id %d is given to both \"%.60s\" and \"%.60s\"", path,
                              (long long)entry + 1, (int)id, b->tokens[id], e->string);
            goto done;
        }
        int64_t slot = token_slot(b, e->string);
        if (b->token_slots[slot] != NO_ID) {
            status = em_error("%s: entry %lld: the token \"%.60s\" appears twice (ids %d and %d)", path,
                              (long long)entry + 1, e->string, (int)b->token_slots[slot], (int)id);
            goto done;
        }
        b->tokens[id] = strdup(e->string);
        if (!b->tokens[id] || token_to_bytes(b, e->string, &b->token_bytes[id], &b->token_len[id]) != EM_OK) {
            status = em_error("%s: out of memory", path);
            goto done;
        }
        b->token_slots[slot] = id;
    }
    for (int byte = 0; byte < 256; byte++) {
        char stand_in[8];
        stand_in[utf8_put(byte_to_cp(byte), stand_in)] = '\0';
        b->byte_token[byte] = em_bpe_find(b, stand_in);
        if (b->byte_token[byte] == NO_ID) {
            status = em_error("%s: no token for byte 0x%02x (written \"%s\"): a byte-level vocabulary has one for "
                              "each of the 256 bytes",
                              path, byte, stand_in);
            goto done;
        }
    }
done:
    cJSON_Delete(root);
    free(text);
    return status;
}

static int load_merges(em_bpe *b, const char *path)
{
    size_t size;
    char *text = read_file(path, &size);
    if (!text)
        return EM_ERR;
    int64_t lines = 1;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    b->merge_cap = power_of_two_above(lines);
    b->merges = calloc((size_t)b->merge_cap, sizeof *b->merges);
    if (!b->merges) {
        free(text);
        return em_error("%s: out of memory", path);
    }
    const char *nul = memchr(text, '\0', size);
    if (nul) {
        int line, col;
        line_col(text, nul, &line, &col);
        free(text);
        return em_error("%s:%d: a NUL byte: merges.txt is text, one merge \"a b\" a line", path, line);
    }
    int status = EM_OK;
    int64_t line_no = 0;
    char *next = text;
    while (next && status == EM_OK) {
        char *line = next;
        char *newline = strchr(line, '\n');
        next = newline ? newline + 1 : NULL;
        if (newline)
            *newline = '\0';
        line_no++;
        size_t n = strlen(line);
        if (n && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0 || (line_no == 1 && strncmp(line, "#version", 8) == 0))
            continue;
        char *space = strchr(line, ' ');
        if (!space || space == line || !space[1] || strchr(space + 1, ' ')) {
            status = em_error("%s:%lld: expected two symbols separated by one space, got \"%.60s\"", path,
                              (long long)line_no, line);
            break;
        }
        *space = '\0';
        const char *left = line, *right = space + 1;
        int32_t l = em_bpe_find(b, left), r = em_bpe_find(b, right);
        if (l == NO_ID || r == NO_ID) {
            status = em_error("%s:%lld: the symbol \"%.60s\" is not in the vocabulary", path, (long long)line_no,
                              l == NO_ID ? left : right);
            break;
        }
        char joined[1024];
        size_t left_len = strlen(left), right_len = strlen(right);
        if (left_len + right_len >= sizeof joined) {
            status = em_error("%s:%lld: the merge is longer than %zu bytes", path, (long long)line_no, sizeof joined - 1);
            break;
        }
        memcpy(joined, left, left_len);
        memcpy(joined + left_len, right, right_len + 1);
        int32_t result = em_bpe_find(b, joined);
        if (result == NO_ID) {
            status = em_error("%s:%lld: merging \"%.60s\" and \"%.60s\" gives \"%.120s\", which is not in the vocabulary",
                              path, (long long)line_no, left, right, joined);
            break;
        }
        merge_slot *s = merge_find(b, l, r);
        if (!s->pair) /* a repeated merge keeps its first (lowest) rank */
            *s = (merge_slot){pair_key(l, r), (int32_t)b->merge_count++, result};
    }
    free(text);
    return status;
}

void em_bpe_free(em_bpe *b)
{
    if (!b)
        return;
    for (int64_t i = 0; b->tokens && i < b->vocab_size; i++) {
        free(b->tokens[i]);
        free(b->token_bytes[i]);
    }
    free(b->tokens);
    free(b->token_bytes);
    free(b->token_len);
    free(b->token_slots);
    free(b->merges);
    free(b);
}

em_bpe *em_bpe_load(const char *vocab_path, const char *merges_path)
{
    if (!vocab_path || !merges_path) {
        em_error("em_bpe_load: no %s path", !vocab_path ? "vocabulary" : "merges");
        return NULL;
    }
    em_bpe *b = calloc(1, sizeof *b);
    if (!b) {
        em_error("tokenizer: out of memory");
        return NULL;
    }
    if (load_vocab(b, vocab_path) != EM_OK || load_merges(b, merges_path) != EM_OK) {
        em_bpe_free(b);
        return NULL;
    }
    b->end_of_text = em_bpe_find(b, END_OF_TEXT);
    return b;
}

em_bpe *em_bpe_load_dir(const char *dir)
{
    if (!dir) {
        em_error("em_bpe_load_dir: no directory");
        return NULL;
    }
    size_t n = strlen(dir) + 16;
    char *vocab = malloc(n), *merges = malloc(n);
    em_bpe *b = NULL;
    if (vocab && merges) {
        snprintf(vocab, n, "%s/vocab.json", dir);
        snprintf(merges, n, "%s/merges.txt", dir);
        b = em_bpe_load(vocab, merges);
    } else {
        em_error("tokenizer: out of memory");
    }
    free(vocab);
    free(merges);
    return b;
}

int64_t em_bpe_vocab_size(const em_bpe *b) { return b ? b->vocab_size : 0; }
int64_t em_bpe_merge_count(const em_bpe *b) { return b ? b->merge_count : 0; }
int32_t em_bpe_end_of_text(const em_bpe *b) { return b ? b->end_of_text : NO_ID; }

const char *em_bpe_token_bytes(const em_bpe *b, int32_t id, size_t *len)
{
    if (!b || id < 0 || id >= b->vocab_size || !b->tokens[id])
        return NULL;
    if (len)
        *len = b->token_len[id];
    return b->token_bytes[id];
}

/* ---- encoding ----------------------------------------------------------------------- */

static em_unicode_class class_at(const unsigned char *s, size_t len, size_t *n)
{
    uint32_t cp = utf8_next(s, len, n);
    return cp == UINT32_MAX ? EM_UNICODE_OTHER : em_unicode_class_of(cp);
}

/* The end of the run of code points of class c from i. */
static size_t run_of(const unsigned char *s, size_t len, size_t i, em_unicode_class c)
{
    size_t n;
    while (i < len && class_at(s + i, len - i, &n) == c)
        i += n;
    return i;
}

/* The end of the piece starting at i: GPT-2's pattern
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t piece_end(const unsigned char *s, size_t len, size_t i)
{
    static const char *const contractions[] = {"s", "t", "re", "ve", "m", "ll", "d"};
    if (s[i] == '\'')
        for (size_t k = 0; k < sizeof contractions / sizeof contractions[0]; k++) {
            size_t n = strlen(contractions[k]);
            if (i + 1 + n <= len && memcmp(s + i + 1, contractions[k], n) == 0)
                return i + 1 + n;
        }
    size_t start = s[i] == ' ' ? i + 1 : i, n;
    if (start < len) {
        em_unicode_class c = class_at(s + start, len - start, &n);
        if (c != EM_UNICODE_SPACE)
            return run_of(s, len, start, c);
    }
    /* white space (s[i] is): all of it at the end of the text or before more white
     * space; before anything else, all but its last code point, which goes with the next
     * piece (when the run has more than one) */
    size_t end = i, last = i;
    while (end < len && class_at(s + end, len - end, &n) == EM_UNICODE_SPACE) {
        last = end;
        end += n;
    }
    return end < len && last > i ? last : end;
}

/* Merges the symbols of one piece in place by rank; returns how many remain. */
static int64_t merge_piece(const em_bpe *b, int32_t *sym, int64_t n)
{
    while (n > 1) {
        int32_t best_rank = INT32_MAX, left = 0, right = 0, result = 0;
        for (int64_t k = 0; k + 1 < n; k++) {
            const merge_slot *s = merge_find(b, sym[k], sym[k + 1]);
            if (s->pair && s->rank < best_rank) {
                best_rank = s->rank;
                left = sym[k];
                right = sym[k + 1];
                result = s->result;
            }
        }
        if (best_rank == INT32_MAX)
            break;
        int64_t out = 0;
        for (int64_t k = 0; k < n; k++) {
            if (k + 1 < n && sym[k] == left && sym[k + 1] == right) {
                sym[out++] = result;
                k++;
            } else {
                sym[out++] = sym[k];
            }
        }
        n = out;
    }
    return n;
}

/* Where the next <|endoftext|> from i begins, or len. */
static size_t special_at(const em_bpe *b, const unsigned char *s, size_t len, size_t i)
{
    if (b->end_of_text == NO_ID)
        return len;
    for (; i + END_OF_TEXT_LEN <= len; i++)
        if (s[i] == '<' && memcmp(s + i, END_OF_TEXT, END_OF_TEXT_LEN) == 0)
            return i;
    return len;
}

int64_t em_bpe_encode(const em_bpe *b, const char *text, size_t len, int32_t **ids)
{
    if (!b || !ids || (!text && len))
        return em_error("em_bpe_encode: no %s", !b ? "tokenizer" : !ids ? "output" : "text");
    *ids = NULL;
    if (len == 0)
        return 0;
    int32_t *out = malloc(len * sizeof *out);
    if (!out)
        return em_error("tokenizer: out of memory for %zu bytes of text", len);
    const unsigned char *s = (const unsigned char *)text;
    int64_t count = 0;
    for (size_t i = 0; i < len;) {
        /* the text up to the next end-of-text token splits into pieces on its own */
        const size_t span = special_at(b, s, len, i);
        while (i < span) {
            size_t end = piece_end(s, span, i);
            int64_t first = count;
            for (size_t k = i; k < end; k++)
                out[count++] = b->byte_token[s[k]];
            count = first + merge_piece(b, out + first, count - first);
            i = end;
        }
        if (span < len) {
            out[count++] = b->end_of_text;
            i = span + END_OF_TEXT_LEN;
        }
    }
    *ids = out;
    return count;
}
