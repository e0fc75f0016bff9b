/* The recurrent driver shared by em_rnn, em_lstm and em_gru: one layer, one direction,
 * a whole sequence.
 *
 * Forward: the input projection of all T steps is one GEMM ([T·B, I]·W_ih^T onto the
 * biases); each step is then one GEMM h_{t-1}·W_hh^T added onto that step's slice plus one
 * fused pass of the cell. Backward goes through time with one GEMM per step
 * (dGates_t·W_hh, added straight into d(loss)/dh_{t-1}) and leaves the weight gradients to
 * three GEMMs over all steps at the end: dW_ih += dGates^T·X, dW_hh += dGates^T·H_prev
 * (H_prev is the hidden states shifted by one step, which the layout below makes one
 * matrix), dX += dGates·W_ih.
 *
 * Internally everything is time-major. The hidden states live in one buffer of T + 1
 * slices [B, H]: slice 0 is h0 and slice t + 1 is h_t, so slices 0..T-1 are H_prev and
 * slices 1..T are the output sequence. The LSTM's cell states follow in T + 1 more
 * slices. That buffer is the data of one "packed" tensor which the main tape node
 * produces; the sequence and the final states handed to the caller are views into it,
 * each recorded as a small node that adds its gradient into the packed gradient, so any
 * mix of them may feed the loss.
 *
 * Batch rows are independent sequences: each thread takes a block of rows through the
 * whole sequence, running its own single-threaded GEMMs (OpenBLAS's OpenMP build does
 * not fork inside a parallel region), so the recurrence needs no barrier per step.
 *
 * The per-step GEMMs have few rows (a thread's share of the batch) and reuse W_hh at every
 * step; BLAS would repack W_hh on every call, so with AVX-512 W_hh is packed once per
 * forward and once per backward and the steps use the panel kernel (panel_gemm.h). Rows
 * of the gate buffers are padded so that the rows a kernel broadcasts from do not share
 * cache sets.
 *
 * Token input (em_*_embedded): x_t is row ids_t of an embedding E, so W_ih x_t is row
 * ids_t of E·W_ih^T. With fewer vocabulary entries than positions, that table of V rows
 * replaces the [T·B, I] input projection, and in backward the gate gradients summed per
 * token (G [V, G·H]) replace the two [T·B]-row GEMMs: dW_ih += G^T·E, dE += G·W_ih. On
 * W3 (V 256, 2048 positions) that is 14% of a training step's arithmetic. */
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

#include "ember/error.h"
#include "ops/panel_gemm.h"
#include "ops/rnn_cell.h"

/* Multiply-adds of one step's recurrent GEMM below which a single thread is faster than
 * splitting the batch (the split costs one fork per sequence, but halves each GEMM). */
#define BATCH_SPLIT_MIN_MACS (1 << 15)

typedef struct rnn_saved {
    const rnn_cell *cell;
    int64_t steps, batch, input, hidden, gate_width;
    int64_t gate_stride;  /* row stride of the gate buffers: gate_width, padded */
    em_activation act;
    bool batch_first;
    /* All inputs: the tape node has room for four, the backward finds the rest here. */
    em_tensor *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
    /* Token input: x is NULL; each row t·B + b of the gates takes token ids[t·B + b]. */
    em_tensor *embedding;
    const int32_t *ids;   /* time-major copy */
    int64_t vocab, padding_idx;
    em_tensor *packed;
    const float *xs;      /* x time-major [T·B, I] */
    float *gates;         /* [T·B, G·H]: the activated gates after forward */
    float *hidden_gates;  /* [T·B, G·H]: W_hh h + b_hh (hidden_apart cells) or NULL */
    float *w_hh_panels;   /* W_hh^T packed for the panel kernel, or NULL: the steps use BLAS */
} rnn_saved;

static void thread_rows(int64_t rows, int64_t *r0, int64_t *r1)
{
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    *r0 = rows * t / nt;
    *r1 = rows * (t + 1) / nt;
}

static bool split_batch(const rnn_saved *s)
{
    return omp_get_max_threads() > 1 && s->batch >= 2 &&
           s->batch * s->gate_width * s->hidden >= BATCH_SPLIT_MIN_MACS;
}

static float *hidden_states(const rnn_saved *s) { return s->packed->data; }

static float *cell_states(const rnn_saved *s)
{
    return s->cell->has_cell_state ? s->packed->data + (s->steps + 1) * s->batch * s->hidden : NULL;
}

/* Rows 2 KiB apart or a multiple of it would share L1 sets when the kernels broadcast from
 * 16 of them at once; one extra cache line per row spreads them out. */
static int64_t padded_stride(int64_t width)
{
    int64_t stride = (width + 15) / 16 * 16;
    return stride % 512 == 0 ? stride + 16 : stride;
}

/* Packing W_hh costs about as much as one step's product (both pass over W_hh once), so
 * it pays only over a few steps: generating one token at a time stays on BLAS. So does a
 * batch too small to split over the threads, where BLAS can split the columns instead. */
static bool use_panels(const rnn_saved *s)
{
    return em_panel_gemm_enabled() && s->steps >= 4 && (split_batch(s) || omp_get_max_threads() == 1);
}

/* n floats of the step arena, 64-byte aligned (as every arena allocation is). */
static float *scratch(int64_t n) { return em_arena_alloc(em_step_arena(), (size_t)n * sizeof(float)); }

/* ---- forward ----------------------------------------------------------------------- */

static void forward_steps(const rnn_saved *s)
{
    const int64_t T = s->steps, B = s->batch, H = s->hidden, GH = s->gate_width, LD = s->gate_stride;
    const float *w_hh = s->w_hh->data;
    const float *b_hh = s->cell->hidden_apart && s->b_hh ? s->b_hh->data : NULL;
    float *hs = hidden_states(s), *cs = cell_states(s);
#pragma omp parallel if (split_batch(s))
    {
        int64_t b0, b1;
        thread_rows(B, &b0, &b1);
        const int m = (int)(b1 - b0);
        for (int64_t t = 0; t < T && m > 0; t++) {
            float *gates = s->gates + t * B * LD;
            float *hidden_gates = s->hidden_gates ? s->hidden_gates + t * B * LD : NULL;
            float *product = (hidden_gates ? hidden_gates : gates) + b0 * LD;
            const float *h_prev = hs + t * B * H + b0 * H;
            /* W_hh h + b_hh lands on its own buffer for the GRU, onto the input side's
             * pre-activations otherwise. */
            for (int64_t b = b0; b < b1 && hidden_gates; b++) {
                if (b_hh)
                    memcpy(hidden_gates + b * LD, b_hh, (size_t)GH * sizeof(float));
                else
                    memset(hidden_gates + b * LD, 0, (size_t)GH * sizeof(float));
            }
            if (s->w_hh_panels)
                em_panel_gemm(m, GH, H, h_prev, H, s->w_hh_panels, product, LD);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, (int)GH, (int)H, 1.0f, h_prev,
                            (int)H, w_hh, (int)H, 1.0f, product, (int)LD);
            rnn_step step = {
                .b0 = b0, .b1 = b1, .hidden = H, .gate_stride = LD, .act = s->act,
                .gates = gates, .hidden_gates = hidden_gates,
                .h_prev = hs + t * B * H, .h = hs + (t + 1) * B * H,
                .c_prev = cs ? cs + t * B * H : NULL, .c = cs ? cs + (t + 1) * B * H : NULL,
            };
            s->cell->forward(&step);
        }
    }
}

/* ---- backward ---------------------------------------------------------------------- */

/* dst[j] += sum over rows of m[r, j], as one GEMV against a vector of ones. */
static void add_column_sums(const float *m, int64_t rows, int64_t cols, int64_t ld, float *dst,
                            const float *ones)
{
    cblas_sgemv(CblasRowMajor, CblasTrans, (int)rows, (int)cols, 1.0f, m, (int)ld, ones, 1, 1.0f, dst,
                1);
}

static void add_into(float *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

/* dW_ih += G^T·E and dE += G·W_ih (not into the padding row), G the gate gradients
 * summed per token. */
static void token_input_backward(const rnn_saved *s, const float *dgates)
{
    const int64_t V = s->vocab, IN = s->input, GH = s->gate_width, LD = s->gate_stride;
    const int64_t rows = s->steps * s->batch;
    if (!s->w_ih->requires_grad && !s->embedding->requires_grad)
        return;
    float *g = scratch(V * GH);
    if (!g)
        return;
    memset(g, 0, (size_t)(V * GH) * sizeof(float));
    /* Threads take column blocks, so no two add into the same place. */
#pragma omp parallel for schedule(static) if (rows * GH >= (1 << 18))
    for (int64_t j0 = 0; j0 < GH; j0 += 64) {
        int64_t n = GH - j0 < 64 ? GH - j0 : 64;
        for (int64_t r = 0; r < rows; r++)
            add_into(g + s->ids[r] * GH + j0, dgates + r * LD + j0, n);
    }
    if (s->w_ih->requires_grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)GH, (int)IN, (int)V, 1.0f, g, (int)GH,
                    s->embedding->data, (int)IN, 1.0f, s->w_ih->grad, (int)IN);
    if (s->embedding->requires_grad) {
        if (s->padding_idx >= 0)
            memset(g + s->padding_idx * GH, 0, (size_t)GH * sizeof(float));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)V, (int)IN, (int)GH, 1.0f, g, (int)GH,
                    s->w_ih->data, (int)IN, 1.0f, s->embedding->grad, (int)IN);
    }
}

static void rnn_backward(em_node *node)
{
    const rnn_saved *s = node->saved;
    const rnn_cell *cell = s->cell;
    const int64_t T = s->steps, B = s->batch, IN = s->input, H = s->hidden, GH = s->gate_width;
    const int64_t LD = s->gate_stride, rows = T * B;
    em_tensor *const extra[] = {s->b_ih, s->b_hh, s->h0, s->c0};
    for (size_t k = 0; k < sizeof extra / sizeof extra[0]; k++)
        if (extra[k] && extra[k]->requires_grad && !em_grad_buffer(extra[k]))
            return;
    float *dgates = scratch(rows * LD);
    float *dhidden = cell->hidden_apart ? scratch(rows * LD) : dgates;
    /* W_hh as the right operand of dGates_t·W_hh, packed once for all steps. */
    float *panels = s->w_hh_panels ? scratch(em_panel_packed_floats(GH, H)) : NULL;
    if (!dgates || !dhidden || (s->w_hh_panels && !panels))
        return;
    if (panels)
        em_panel_pack(s->w_hh->data, H, 1, GH, H, panels);
    float *hs = hidden_states(s), *cs = cell_states(s);
    float *dhs = s->packed->grad;
    float *dcs = cell->has_cell_state ? dhs + (T + 1) * B * H : NULL;
    const float *w_hh = s->w_hh->data;
    const bool need_dh0 = s->h0 && s->h0->requires_grad;

#pragma omp parallel if (split_batch(s))
    {
        int64_t b0, b1;
        thread_rows(B, &b0, &b1);
        const int m = (int)(b1 - b0);
        for (int64_t t = T - 1; t >= 0 && m > 0; t--) {
            rnn_step step = {
                .b0 = b0, .b1 = b1, .hidden = H, .gate_stride = LD, .act = s->act,
                .gates = s->gates + t * B * LD,
                .hidden_gates = s->hidden_gates ? s->hidden_gates + t * B * LD : NULL,
                .h_prev = hs + t * B * H, .h = hs + (t + 1) * B * H,
                .c_prev = cs ? cs + t * B * H : NULL, .c = cs ? cs + (t + 1) * B * H : NULL,
                .dh = dhs + (t + 1) * B * H, .dh_prev = dhs + t * B * H,
                .dc = dcs ? dcs + (t + 1) * B * H : NULL, .dc_prev = dcs ? dcs + t * B * H : NULL,
                .dgates = dgates + t * B * LD, .dhidden_gates = dhidden + t * B * LD,
            };
            cell->backward(&step);
            /* dh_{t-1} += dGates_t·W_hh: the gradient through the recurrence. */
            const float *dg = dhidden + t * B * LD + b0 * LD;
            float *dh_prev = dhs + t * B * H + b0 * H;
            if (t == 0 && !need_dh0)
                continue;
            if (panels)
                em_panel_gemm(m, H, GH, dg, LD, panels, dh_prev, H);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, (int)H, (int)GH, 1.0f, dg,
                            (int)LD, w_hh, (int)H, 1.0f, dh_prev, (int)H);
        }
    }

    if (s->w_hh->requires_grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)GH, (int)H, (int)rows, 1.0f, dhidden,
                    (int)LD, hs, (int)H, 1.0f, s->w_hh->grad, (int)H);
    if (s->embedding)
        token_input_backward(s, dgates);
    else if (s->w_ih->requires_grad)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)GH, (int)IN, (int)rows, 1.0f, dgates,
                    (int)LD, s->xs, (int)IN, 1.0f, s->w_ih->grad, (int)IN);
    bool need_db_ih = s->b_ih && s->b_ih->requires_grad, need_db_hh = s->b_hh && s->b_hh->requires_grad;
    if (need_db_ih || need_db_hh) {
        float *ones = scratch(rows);
        if (!ones)
            return;
        for (int64_t r = 0; r < rows; r++)
            ones[r] = 1.0f;
        if (need_db_ih)
            add_column_sums(dgates, rows, GH, LD, s->b_ih->grad, ones);
        if (need_db_hh)
            add_column_sums(dhidden, rows, GH, LD, s->b_hh->grad, ones);
    }
    if (s->x && s->x->requires_grad) {
        if (!s->batch_first) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)IN, (int)GH, 1.0f,
                        dgates, (int)LD, s->w_ih->data, (int)IN, 1.0f, s->x->grad, (int)IN);
        } else {
            float *dx = scratch(rows * IN);
            if (!dx)
                return;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)IN, (int)GH, 1.0f,
                        dgates, (int)LD, s->w_ih->data, (int)IN, 0.0f, dx, (int)IN);
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t < T; t++)
                    add_into(s->x->grad + (b * T + t) * IN, dx + (t * B + b) * IN, IN);
        }
    }
    if (need_dh0)
        add_into(s->h0->grad, dhs, B * H);
    if (s->c0 && s->c0->requires_grad)
        add_into(s->c0->grad, dcs, B * H);
}

/* ---- outputs: views into the packed states ----------------------------------------- */

/* node->i: [0] offset of the view's first element in the packed tensor, [1] whether it is
 * the batch-first sequence (a transposed copy), [2..4] T, B, H. */
static void output_backward(em_node *node)
{
    float *dst = node->in[0]->grad + node->i[0];
    const float *g = node->out->grad;
    if (!node->i[1]) {
        add_into(dst, g, node->out->numel);
        return;
    }
    const int64_t T = node->i[2], B = node->i[3], H = node->i[4];
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            add_into(dst + (t * B + b) * H, g + (b * T + t) * H, H);
}

static em_tensor *output_view(const rnn_saved *s, int ndim, const int64_t *shape, int64_t offset)
{
    em_tensor *out = em_tensor_wrap(NULL, ndim, shape, s->packed->data + offset);
    if (!out)
        return NULL;
    em_node *node = em_record(s->cell->name, out, 1, (em_tensor *[]){s->packed}, output_backward);
    if (node) {
        node->i[0] = offset;
        node->i[1] = 0;
    }
    return out;
}

static em_tensor *output_sequence(const rnn_saved *s)
{
    const int64_t T = s->steps, B = s->batch, H = s->hidden;
    if (!s->batch_first)
        return output_view(s, 3, (int64_t[]){T, B, H}, B * H);
    em_tensor *out = em_tensor_empty(NULL, 3, (int64_t[]){B, T, H});
    if (!out)
        return NULL;
    const float *hs = hidden_states(s);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            memcpy(out->data + (b * T + t) * H, hs + ((t + 1) * B + b) * H, (size_t)H * sizeof(float));
    em_node *node = em_record(s->cell->name, out, 1, (em_tensor *[]){s->packed}, output_backward);
    if (node) {
        node->i[0] = B * H;
        node->i[1] = 1;
        node->i[2] = T, node->i[3] = B, node->i[4] = H;
    }
    return out;
}

/* ---- argument checks --------------------------------------------------------------- */

static bool blas_size(int64_t v) { return v > 0 && v <= INT_MAX; }

/* h0 or c0: [B, H], or [1, B, H] as sliced from a stacked [layers, B, H] state. */
static int check_state(const rnn_cell *cell, const char *what, const em_tensor *st, int64_t B,
                       int64_t H, const em_tensor *x)
{
    if (!st)
        return EM_OK;
    bool fits = (st->ndim == 2 && st->shape[0] == B && st->shape[1] == H) ||
                (st->ndim == 3 && st->shape[0] == 1 && st->shape[1] == B && st->shape[2] == H);
    if (!fits)
        return em_error("%s: %s %s does not fit input %s: expected [%lld, %lld] (batch, hidden)",
                        cell->name, what, em_shape_str(st), em_shape_str(x), (long long)B,
                        (long long)H);
    return EM_OK;
}

static int check_bias(const rnn_cell *cell, const char *what, const em_tensor *b, int64_t GH,
                      const em_tensor *w_hh)
{
    if (b && (b->ndim != 1 || b->shape[0] != GH))
        return em_error("%s: %s %s does not fit weight_hh %s: expected [%lld]", cell->name, what,
                        em_shape_str(b), em_shape_str(w_hh), (long long)GH);
    return EM_OK;
}

static int check_arguments(const rnn_cell *cell, const em_tensor *x, const em_rnn_params *p,
                           const em_tensor *h0, const em_tensor *c0, em_activation act,
                           bool batch_first)
{
    const int G = cell->gates;
    if (cell->gates == 1 && act != EM_ACT_TANH && act != EM_ACT_RELU)
        return em_error("%s: the nonlinearity must be tanh or relu, got %s", cell->name,
                        (int)act >= 0 && act < EM_ACT_COUNT ? em_activation_name(act) : "unknown");
    if (x->ndim != 3)
        return em_error("%s: input %s must be %s", cell->name, em_shape_str(x),
                        batch_first ? "[batch, seq, input_size] (batch_first)"
                                    : "[seq, batch, input_size]");
    const int64_t T = x->shape[batch_first ? 1 : 0], B = x->shape[batch_first ? 0 : 1];
    const int64_t IN = x->shape[2];
    const em_tensor *w_ih = p->weight_ih, *w_hh = p->weight_hh;
    if (w_hh->ndim != 2 || w_hh->shape[0] % G != 0 || w_hh->shape[0] / G != w_hh->shape[1])
        return em_error("%s: weight_hh %s must be [%d·hidden_size, hidden_size]", cell->name,
                        em_shape_str(w_hh), G);
    const int64_t H = w_hh->shape[1], GH = w_hh->shape[0];
    if (w_ih->ndim != 2 || w_ih->shape[0] != GH || w_ih->shape[1] != IN)
        return em_error("%s: weight_ih %s does not fit input %s and weight_hh %s: expected "
                        "[%lld, %lld]", cell->name, em_shape_str(w_ih), em_shape_str(x),
                        em_shape_str(w_hh), (long long)GH, (long long)IN);
    if (check_bias(cell, "bias_ih", p->bias_ih, GH, w_hh) != EM_OK ||
        check_bias(cell, "bias_hh", p->bias_hh, GH, w_hh) != EM_OK ||
        check_state(cell, "h0", h0, B, H, x) != EM_OK ||
        check_state(cell, "c0", c0, B, H, x) != EM_OK)
        return EM_ERR;
    if (!blas_size(T * B) || !blas_size(GH) || !blas_size(IN) || !blas_size(H * (T + 1) * B))
        return em_error("%s: input %s with weight_hh %s exceeds BLAS's 32-bit range", cell->name,
                        em_shape_str(x), em_shape_str(w_hh));
    return EM_OK;
}

/* ---- the op ------------------------------------------------------------------------ */

/* Rows of the input projection start from b_ih (+ b_hh where the cell sums both). */
static void fill_bias_rows(const rnn_saved *s, float *gates, int64_t rows)
{
    const int64_t GH = s->gate_width;
    float *bias = scratch(GH);
    if (!bias)
        return;
    for (int64_t j = 0; j < GH; j++) {
        float v = s->b_ih ? s->b_ih->data[j] : 0.0f;
        if (!s->cell->hidden_apart && s->b_hh)
            v += s->b_hh->data[j];
        bias[j] = v;
    }
    for (int64_t r = 0; r < rows; r++)
        memcpy(gates + r * s->gate_stride, bias, (size_t)GH * sizeof(float));
}

static void copy_state(float *dst, const em_tensor *st, int64_t n)
{
    if (st)
        em_copy_to(st, dst);
    else
        memset(dst, 0, (size_t)n * sizeof(float));
}

static em_tensor *dense_or_null(em_tensor *t) { return t ? em_contiguous(t) : NULL; }

/* Token input: the embedding's shape, the ids' range (the first one outside named with
 * its position, as em_embedding does) and a time-major copy of them into s. A header
 * with the shape of the embedded input stands in for x in the common checks. */
static int check_tokens(const rnn_cell *cell, const em_token_input *tokens, bool batch_first, em_tensor *shape_of_x)
{
    const em_tensor *e = tokens->embedding;
    if (!e)
        return EM_ERR;
    if (e->ndim != 2)
        return em_error("%s: the embedding %s must be [num_embeddings, embedding_dim]", cell->name, em_shape_str(e));
    if (!tokens->ids || tokens->batch < 1 || tokens->steps < 1)
        return em_error("%s: %lld sequences of %lld token ids%s", cell->name, (long long)tokens->batch,
                        (long long)tokens->steps, tokens->ids ? "" : " (no ids given)");
    const int64_t V = e->shape[0];
    if (tokens->padding_idx >= V)
        return em_error("%s: padding_idx %lld is outside the embedding %s", cell->name,
                        (long long)tokens->padding_idx, em_shape_str(e));
    const int64_t B = tokens->batch, T = tokens->steps;
    for (int64_t i = 0; i < B * T; i++)
        if (tokens->ids[i] < 0 || tokens->ids[i] >= V) {
            int64_t inner = batch_first ? T : B;
            return em_error("%s: token id %d at [%lld, %lld] is outside the embedding %s", cell->name, tokens->ids[i],
                            (long long)(i / inner), (long long)(i % inner), em_shape_str(e));
        }
    memset(shape_of_x, 0, sizeof *shape_of_x);
    shape_of_x->ndim = 3;
    shape_of_x->shape[0] = batch_first ? B : T;
    shape_of_x->shape[1] = batch_first ? T : B;
    shape_of_x->shape[2] = e->shape[1];
    shape_of_x->numel = B * T * e->shape[1];
    return EM_OK;
}

em_tensor *em_rnn_sequence(const rnn_cell *cell, em_tensor *x, const em_token_input *tokens,
                           const em_rnn_params *params, em_tensor *h0, em_tensor *c0, em_activation act,
                           bool batch_first, em_tensor **h_n, em_tensor **c_n)
{
    if (h_n)
        *h_n = NULL;
    if (c_n)
        *c_n = NULL;
    if (!params)
        return em_error("%s: no weights given", cell->name), NULL;
    em_tensor embedded_shape;
    if (tokens && check_tokens(cell, tokens, batch_first, &embedded_shape) != EM_OK)
        return NULL;
    if (tokens)
        x = &embedded_shape;
    if (!x || !params->weight_ih || !params->weight_hh)
        return NULL;
    if (check_arguments(cell, x, params, h0, c0, act, batch_first) != EM_OK)
        return NULL;

    rnn_saved *s = em_arena_alloc(em_step_arena(), sizeof *s);
    if (!s)
        return NULL;
    memset(s, 0, sizeof *s);
    s->cell = cell;
    s->act = act;
    s->batch_first = batch_first;
    s->steps = x->shape[batch_first ? 1 : 0];
    s->batch = x->shape[batch_first ? 0 : 1];
    s->input = x->shape[2];
    s->hidden = params->weight_hh->shape[1];
    s->gate_width = params->weight_hh->shape[0];
    s->gate_stride = padded_stride(s->gate_width);
    /* BLAS reads the weights and x in place when dense; anything else is copied once
     * (on the tape, so gradients still reach the original). */
    if (tokens) {
        s->embedding = em_contiguous(tokens->embedding);
        s->vocab = tokens->embedding->shape[0];
        s->padding_idx = tokens->padding_idx;
    } else {
        s->x = em_contiguous(x);
    }
    s->w_ih = em_contiguous(params->weight_ih);
    s->w_hh = em_contiguous(params->weight_hh);
    s->b_ih = dense_or_null(params->bias_ih);
    s->b_hh = dense_or_null(params->bias_hh);
    s->h0 = h0;
    s->c0 = cell->has_cell_state ? c0 : NULL;
    if (!(s->x || s->embedding) || !s->w_ih || !s->w_hh || (params->bias_ih && !s->b_ih) ||
        (params->bias_hh && !s->b_hh))
        return NULL;

    const int64_t T = s->steps, B = s->batch, IN = s->input, H = s->hidden, GH = s->gate_width;
    const int64_t LD = s->gate_stride, rows = T * B;
    int64_t packed_numel = (T + 1) * B * H * (cell->has_cell_state ? 2 : 1);
    s->packed = em_tensor_empty(NULL, 1, &packed_numel);
    s->gates = scratch(rows * LD);
    if (cell->hidden_apart)
        s->hidden_gates = scratch(rows * LD);
    const bool panels = use_panels(s);
    if (panels)
        s->w_hh_panels = scratch(em_panel_packed_floats(H, GH));
    if (!s->packed || !s->gates || (cell->hidden_apart && !s->hidden_gates) ||
        (panels && !s->w_hh_panels))
        return NULL;
    if (tokens) {
        int32_t *ids = em_arena_alloc(em_step_arena(), (size_t)rows * sizeof *ids);
        if (!ids)
            return NULL;
        for (int64_t t = 0; t < T; t++)
            for (int64_t b = 0; b < B; b++)
                ids[t * B + b] = tokens->ids[batch_first ? b * T + t : t * B + b];
        s->ids = ids;
    } else if (batch_first) {
        float *xs = scratch(rows * IN);
        if (!xs)
            return NULL;
        for (int64_t t = 0; t < T; t++)
            for (int64_t b = 0; b < B; b++)
                memcpy(xs + (t * B + b) * IN, s->x->data + (b * T + t) * IN, (size_t)IN * sizeof(float));
        s->xs = xs;
    } else {
        s->xs = s->x->data;
    }

    copy_state(hidden_states(s), s->h0, B * H);
    if (cell->has_cell_state)
        copy_state(cell_states(s), s->c0, B * H);
    bool any_bias = s->b_ih || (!cell->hidden_apart && s->b_hh);
    if (s->embedding) {
        /* The projection of every token once, then a row of it per position. */
        const int64_t V = s->vocab;
        float *table = scratch(V * LD);
        if (!table)
            return NULL;
        if (any_bias)
            fill_bias_rows(s, table, V);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)V, (int)GH, (int)IN, 1.0f, s->embedding->data,
                    (int)IN, s->w_ih->data, (int)IN, any_bias ? 1.0f : 0.0f, table, (int)LD);
        for (int64_t r = 0; r < rows; r++)
            memcpy(s->gates + r * LD, table + s->ids[r] * LD, (size_t)GH * sizeof(float));
    } else {
        if (any_bias)
            fill_bias_rows(s, s->gates, rows);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)GH, (int)IN, 1.0f, s->xs, (int)IN,
                    s->w_ih->data, (int)IN, any_bias ? 1.0f : 0.0f, s->gates, (int)LD);
    }
    if (s->w_hh_panels) /* W_hh^T: B[k][j] = W_hh[j][k] */
        em_panel_pack(s->w_hh->data, 1, H, H, GH, s->w_hh_panels);
    forward_steps(s);

    /* The node holds four inputs; the always-present ones first, then the first of the
     * optional ones that needs a gradient, so that the node is recorded whenever any
     * input needs one. The backward reaches all of them through the saved context. */
    em_tensor *optional[] = {s->b_ih, s->b_hh, s->h0, s->c0};
    em_tensor *fourth = NULL;
    for (size_t k = 0; k < sizeof optional / sizeof optional[0] && !fourth; k++)
        if (optional[k] && optional[k]->requires_grad)
            fourth = optional[k];
    em_node *node = em_record(cell->name, s->packed, 4,
                              (em_tensor *[]){s->x ? s->x : s->embedding, s->w_ih, s->w_hh, fourth}, rnn_backward);
    if (node)
        node->saved = s;

    em_tensor *seq = output_sequence(s);
    if (!seq)
        return NULL;
    if (h_n) {
        *h_n = output_view(s, 2, (int64_t[]){B, H}, T * B * H);
        if (!*h_n)
            return NULL;
    }
    if (c_n && cell->has_cell_state) {
        *c_n = output_view(s, 2, (int64_t[]){B, H}, (2 * T + 1) * B * H);
        if (!*c_n)
            return NULL;
    }
    return seq;
}
