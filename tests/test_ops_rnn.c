/* em_rnn, em_lstm, em_gru: PyTorch parity of two chained layers (torch.nn.RNN/LSTM/GRU
 * with num_layers=2) seq-first and batch-first with given initial states: the output
 * sequence, the final states and the gradients of x, h0, c0 and every weight for a loss
 * on all of them; numeric gradient checks of each cell with losses on the sequence, on
 * the final states only and on both, initial states requiring gradients, and only a
 * state requiring one; the batch split over threads and the panel kernel against one
 * thread and BLAS; backward run twice over one tape; no recording with gradients off; bad
 * input. */
#include <stdlib.h>
#include <string.h>

#include "ops/panel_gemm.h"
#include "testlib.h"

typedef enum kind { K_RNN, K_LSTM, K_GRU } kind;

static const char *const kind_names[] = {"rnn", "lstm", "gru"};

static em_tensor *run(kind k, em_tensor *x, const em_rnn_params *p, em_tensor *h0, em_tensor *c0,
                      em_activation act, bool batch_first, em_tensor **h_n, em_tensor **c_n)
{
    switch (k) {
    case K_RNN: return em_rnn(x, p, h0, act, batch_first, h_n);
    case K_LSTM: return em_lstm(x, p, h0, c0, batch_first, h_n, c_n);
    case K_GRU: return em_gru(x, p, h0, batch_first, h_n);
    }
    return NULL;
}

static em_tensor *flat(em_tensor *t) { return em_reshape(t, 1, (int64_t[]){-1}); }

/* ---- PyTorch parity ---------------------------------------------------------------- */

typedef struct parity_case {
    const char *name;
    kind k;
    em_activation act;
    bool batch_first, bias, with_state;
} parity_case;

/* The same table as RNN_CASES in tests/fixtures/gen_rnn.py (T 5, B 3, I 4, H 6, 2 layers). */
static const parity_case parity_cases[] = {
    {"rnn_tanh", K_RNN, EM_ACT_TANH, false, true, true},
    {"rnn_tanh_bf", K_RNN, EM_ACT_TANH, true, true, true},
    {"rnn_relu", K_RNN, EM_ACT_RELU, false, true, true},
    {"rnn_relu_bf", K_RNN, EM_ACT_RELU, true, true, true},
    {"lstm", K_LSTM, EM_ACT_NONE, false, true, true},
    {"lstm_bf", K_LSTM, EM_ACT_NONE, true, true, true},
    {"lstm_zero_state", K_LSTM, EM_ACT_NONE, false, true, false},
    {"gru", K_GRU, EM_ACT_NONE, false, true, true},
    {"gru_bf", K_GRU, EM_ACT_NONE, true, true, true},
    {"gru_no_bias", K_GRU, EM_ACT_NONE, false, false, true},
};

#define LAYERS 2

static em_tensor *field(em_st_file *f, const char *c, const char *name, bool input)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", c, name);
    return input ? test_fixture_input(f, key) : test_fixture_tensor(f, key);
}

static void check_grad(em_st_file *f, const char *c, const char *name, const em_tensor *t)
{
    char key[96], what[160];
    snprintf(key, sizeof key, "g%s", name);
    snprintf(what, sizeof what, "%s grad %s", c, name);
    test_grad_close(what, t->grad, field(f, c, key, false), 2e-5, 2e-4);
}

static void check_value(em_st_file *f, const char *c, const char *name, const em_tensor *t,
                        const float *want)
{
    char what[160];
    snprintf(what, sizeof what, "%s %s", c, name);
    (void)f;
    test_tensor_close(what, t, want, 2e-5, 2e-4);
}

static void test_parity(void)
{
    em_st_file *f = test_fixture("rnn");
    for (size_t i = 0; i < sizeof parity_cases / sizeof parity_cases[0]; i++) {
        const parity_case *pc = &parity_cases[i];
        const char *c = pc->name;
        bool lstm = pc->k == K_LSTM;
        em_tensor *x = field(f, c, "x", true);
        em_tensor *h0 = pc->with_state ? field(f, c, "h0", true) : NULL;
        em_tensor *c0 = pc->with_state && lstm ? field(f, c, "c0", true) : NULL;
        em_rnn_params p[LAYERS];
        char name[64];
        for (int l = 0; l < LAYERS; l++) {
            snprintf(name, sizeof name, "weight_ih_l%d", l);
            p[l].weight_ih = field(f, c, name, true);
            snprintf(name, sizeof name, "weight_hh_l%d", l);
            p[l].weight_hh = field(f, c, name, true);
            p[l].bias_ih = p[l].bias_hh = NULL;
            if (pc->bias) {
                snprintf(name, sizeof name, "bias_ih_l%d", l);
                p[l].bias_ih = field(f, c, name, true);
                snprintf(name, sizeof name, "bias_hh_l%d", l);
                p[l].bias_hh = field(f, c, name, true);
            }
        }
        /* The layer code's job, done by hand: slice the stacked states, chain the layers. */
        em_tensor *seq = x, *h_n[LAYERS] = {NULL}, *c_n[LAYERS] = {NULL};
        for (int l = 0; l < LAYERS; l++) {
            em_tensor *h0l = h0 ? em_slice(h0, 0, l, l + 1, 1) : NULL;
            em_tensor *c0l = c0 ? em_slice(c0, 0, l, l + 1, 1) : NULL;
            seq = run(pc->k, seq, &p[l], h0l, c0l, pc->act, pc->batch_first, &h_n[l],
                      lstm ? &c_n[l] : NULL);
        }
        em_tensor *want = field(f, c, "out", false);
        CHECK_MSG(seq && em_same_shape(seq, want), "%s: output %s, want %s (%s)", c,
                  em_shape_str(seq), em_shape_str(want), ember_last_error());
        if (!seq || !h_n[1] || (lstm && !c_n[1])) {
            em_step_end();
            continue;
        }
        check_value(f, c, "output", seq, want->data);
        em_tensor *want_h = field(f, c, "h_n", false);
        const int64_t bh = h_n[0]->numel;
        for (int l = 0; l < LAYERS; l++) {
            snprintf(name, sizeof name, "h_n[%d]", l);
            check_value(f, c, name, h_n[l], want_h->data + l * bh);
            if (lstm) {
                snprintf(name, sizeof name, "c_n[%d]", l);
                check_value(f, c, name, c_n[l], field(f, c, "c_n", false)->data + l * bh);
            }
        }

        /* One backward for a loss on the sequence and on every final state. */
        em_tensor *parts[1 + 2 * LAYERS];
        int n_parts = 0;
        parts[n_parts++] = flat(seq);
        for (int l = 0; l < LAYERS; l++)
            parts[n_parts++] = flat(h_n[l]);
        for (int l = 0; l < LAYERS && lstm; l++)
            parts[n_parts++] = flat(c_n[l]);
        em_tensor *root = em_concat(parts, n_parts, 0);
        em_tensor *gy = field(f, c, "gy", false), *ghn = field(f, c, "ghn", false);
        em_tensor *gcn = lstm ? field(f, c, "gcn", false) : NULL;
        float *g = malloc((size_t)root->numel * sizeof(float));
        memcpy(g, gy->data, (size_t)gy->numel * sizeof(float));
        memcpy(g + gy->numel, ghn->data, (size_t)ghn->numel * sizeof(float));
        if (gcn)
            memcpy(g + gy->numel + ghn->numel, gcn->data, (size_t)gcn->numel * sizeof(float));
        CHECK(em_backward_with(root, g) == EM_OK);
        free(g);
        check_grad(f, c, "x", x);
        if (h0)
            check_grad(f, c, "h0", h0);
        if (c0)
            check_grad(f, c, "c0", c0);
        for (int l = 0; l < LAYERS; l++) {
            snprintf(name, sizeof name, "weight_ih_l%d", l);
            check_grad(f, c, name, p[l].weight_ih);
            snprintf(name, sizeof name, "weight_hh_l%d", l);
            check_grad(f, c, name, p[l].weight_hh);
            if (pc->bias) {
                snprintf(name, sizeof name, "bias_ih_l%d", l);
                check_grad(f, c, name, p[l].bias_ih);
                snprintf(name, sizeof name, "bias_hh_l%d", l);
                check_grad(f, c, name, p[l].bias_hh);
            }
        }
        em_step_end();
    }
    em_st_close(f);
}

/* ---- numeric gradient checks ------------------------------------------------------- */

enum { USE_SEQ = 1, USE_HN = 2, USE_CN = 4 };

/* Central differences through a float32 recurrence carry about 3e-5 of absolute noise
 * and truncation (measured at these sizes: smaller steps make it worse), against the
 * checker's 1e-3 floor for small gradients; a wrong term errs by far more. The tight
 * check is the PyTorch parity above (2e-4 relative against float64). */
#define GRADCHECK_TOL 5e-2

typedef struct cell_closure {
    kind k;
    em_activation act;
    bool batch_first;
    int use;
    em_tensor *x, *h0, *c0;
    em_rnn_params p;
} cell_closure;

/* The chosen outputs, flattened and concatenated: every element gets its own weight in
 * the checker's weighted sum. */
static em_tensor *cell_fn(void *user, em_tensor *const *in, int n)
{
    (void)in;
    (void)n;
    const cell_closure *c = user;
    em_tensor *h_n = NULL, *c_n = NULL;
    em_tensor *seq = run(c->k, c->x, &c->p, c->h0, c->c0, c->act, c->batch_first, &h_n,
                         c->k == K_LSTM ? &c_n : NULL);
    if (!seq)
        return NULL;
    em_tensor *parts[3];
    int count = 0;
    if (c->use & USE_SEQ)
        parts[count++] = flat(seq);
    if (c->use & USE_HN)
        parts[count++] = flat(h_n);
    if ((c->use & USE_CN) && c_n)
        parts[count++] = flat(c_n);
    return count == 1 ? parts[0] : em_concat(parts, count, 0);
}

static void make_closure(cell_closure *c, em_rng *rng, kind k, em_activation act, bool batch_first,
                         bool grads)
{
    const int64_t T = 4, B = 3, I = 3, H = 4, G = k == K_LSTM ? 4 : k == K_GRU ? 3 : 1;
    memset(c, 0, sizeof *c);
    c->k = k;
    c->act = act;
    c->batch_first = batch_first;
    int64_t xs[3] = {batch_first ? B : T, batch_first ? T : B, I};
    c->x = test_randn(rng, 3, xs, 1.0f);
    c->h0 = test_randn(rng, 2, (int64_t[]){B, H}, 0.5f);
    c->c0 = k == K_LSTM ? test_randn(rng, 2, (int64_t[]){B, H}, 0.5f) : NULL;
    c->p.weight_ih = test_randn(rng, 2, (int64_t[]){G * H, I}, 0.6f);
    c->p.weight_hh = test_randn(rng, 2, (int64_t[]){G * H, H}, 0.6f);
    c->p.bias_ih = test_randn(rng, 1, (int64_t[]){G * H}, 0.3f);
    c->p.bias_hh = test_randn(rng, 1, (int64_t[]){G * H}, 0.3f);
    em_tensor *all[] = {c->x, c->h0, c->c0, c->p.weight_ih, c->p.weight_hh, c->p.bias_ih, c->p.bias_hh};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            all[i]->requires_grad = grads;
}

static int closure_inputs(cell_closure *c, em_tensor **out)
{
    em_tensor *all[] = {c->x, c->h0, c->c0, c->p.weight_ih, c->p.weight_hh, c->p.bias_ih, c->p.bias_hh};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i])
            out[n++] = all[i];
    return n;
}

static void test_gradcheck_cells(void)
{
    static const struct {
        kind k;
        em_activation act;
    } kinds[] = {{K_RNN, EM_ACT_TANH}, {K_RNN, EM_ACT_RELU}, {K_LSTM, EM_ACT_NONE}, {K_GRU, EM_ACT_NONE}};
    static const struct {
        int use;
        const char *what;
    } losses[] = {{USE_SEQ | USE_HN | USE_CN, "sequence and final states"},
                  {USE_SEQ, "sequence only"},
                  {USE_HN | USE_CN, "final states only"},
                  {USE_CN, "final c only"}};
    em_rng rng;
    em_rng_seed(&rng, 21);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        for (size_t u = 0; u < sizeof losses / sizeof losses[0]; u++) {
            if (losses[u].use == USE_CN && kinds[i].k != K_LSTM)
                continue;
            for (int bf = 0; bf < 2; bf++) {
                cell_closure c;
                make_closure(&c, &rng, kinds[i].k, kinds[i].act, bf, true);
                em_tensor *inputs[7];
                int n = closure_inputs(&c, inputs);
                char what[160];
                snprintf(what, sizeof what, "%s%s%s, %s", kind_names[kinds[i].k],
                         kinds[i].act == EM_ACT_RELU ? " relu" : "", bf ? " batch_first" : "",
                         losses[u].what);
                c.use = losses[u].use;
                /* relu's kink: a smaller step keeps probes on one side of it. */
                double eps = kinds[i].act == EM_ACT_RELU ? 3e-3 : 1e-2;
                test_gradcheck(what, cell_fn, &c, inputs, n, eps, GRADCHECK_TOL);
                em_step_end();
            }
        }
    }
}

/* Only an initial state needs a gradient (frozen weights, an input without one): the op
 * must still be recorded (the state is not among the node's first three inputs), and
 * without h0 only c0 may need one. */
static void test_only_state_requires_grad(void)
{
    em_rng rng;
    em_rng_seed(&rng, 33);
    cell_closure c;
    make_closure(&c, &rng, K_LSTM, EM_ACT_NONE, false, false);
    c.use = USE_SEQ | USE_HN | USE_CN;
    c.h0->requires_grad = true;
    test_gradcheck("lstm, only h0 requires grad", cell_fn, &c, &c.h0, 1, 1e-2, GRADCHECK_TOL);
    c.h0->requires_grad = false;
    c.h0->grad = NULL;
    c.c0->requires_grad = true;
    test_gradcheck("lstm, only c0 requires grad", cell_fn, &c, &c.c0, 1, 1e-2, GRADCHECK_TOL);
    CHECK(c.h0->grad == NULL && c.x->grad == NULL && c.p.weight_hh->grad == NULL);
    c.c0->requires_grad = false;
    make_closure(&c, &rng, K_GRU, EM_ACT_NONE, true, false);
    c.use = USE_HN;
    c.p.bias_hh->requires_grad = true;
    test_gradcheck("gru, only bias_hh requires grad", cell_fn, &c, &c.p.bias_hh, 1, 1e-2, GRADCHECK_TOL);
    em_step_end();
}

/* ---- threads, repeated backward, inference ------------------------------------------ */

typedef struct run_result {
    float *seq, *h_n, *c_n, *gx, *gh0, *gc0, *gw_ih, *gw_hh, *gb_ih, *gb_hh;
    int64_t n_seq, n_state, n_x, n_w_ih, n_w_hh, n_b;
} run_result;

static float *copy_out(const float *src, int64_t n)
{
    float *d = malloc((size_t)n * sizeof(float));
    memcpy(d, src, (size_t)n * sizeof(float));
    return d;
}

static void free_result(run_result *r)
{
    float *all[] = {r->seq, r->h_n, r->c_n, r->gx, r->gh0, r->gc0, r->gw_ih, r->gw_hh, r->gb_ih, r->gb_hh};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
}

/* Large enough to split the batch over threads, with odd sizes: 15 rows per thread (row
 * blocks of 8, 4, 2, 1 in the panel kernel) and G·H and H not whole panels. A fixed
 * seed; forward and backward with `threads` threads, through BLAS or the panel kernel. */
static run_result run_big(kind k, int threads, bool batch_first, bool blas)
{
    const int64_t T = 7, B = 30, I = 24, H = 50, G = k == K_LSTM ? 4 : k == K_GRU ? 3 : 1;
    em_set_num_threads(threads);
    em_panel_gemm_set_disabled(blas);
    em_rng rng;
    em_rng_seed(&rng, 77);
    int64_t xs[3] = {batch_first ? B : T, batch_first ? T : B, I};
    em_tensor *x = test_randn(&rng, 3, xs, 1.0f);
    em_tensor *h0 = test_randn(&rng, 2, (int64_t[]){B, H}, 0.5f);
    em_tensor *c0 = k == K_LSTM ? test_randn(&rng, 2, (int64_t[]){B, H}, 0.5f) : NULL;
    em_rnn_params p = {test_randn(&rng, 2, (int64_t[]){G * H, I}, 0.2f),
                       test_randn(&rng, 2, (int64_t[]){G * H, H}, 0.2f),
                       test_randn(&rng, 1, (int64_t[]){G * H}, 0.1f),
                       test_randn(&rng, 1, (int64_t[]){G * H}, 0.1f)};
    em_tensor *h_n = NULL, *c_n = NULL;
    em_tensor *seq = run(k, x, &p, h0, c0, EM_ACT_TANH, batch_first, &h_n, k == K_LSTM ? &c_n : NULL);
    run_result r;
    memset(&r, 0, sizeof r);
    if (!seq) {
        fprintf(stderr, "run_big: %s\n", ember_last_error());
        return r;
    }
    em_tensor *parts[3] = {flat(seq), flat(h_n), c_n ? flat(c_n) : NULL};
    em_tensor *root = em_concat(parts, c_n ? 3 : 2, 0);
    float *g = malloc((size_t)root->numel * sizeof(float));
    for (int64_t i = 0; i < root->numel; i++)
        g[i] = em_rng_normal(&rng);
    CHECK(em_backward_with(root, g) == EM_OK);
    free(g);
    r.n_seq = seq->numel, r.n_state = B * H, r.n_x = x->numel;
    r.n_w_ih = p.weight_ih->numel, r.n_w_hh = p.weight_hh->numel, r.n_b = G * H;
    r.seq = copy_out(seq->data, r.n_seq);
    r.h_n = copy_out(h_n->data, r.n_state);
    r.c_n = c_n ? copy_out(c_n->data, r.n_state) : NULL;
    r.gx = copy_out(x->grad, r.n_x);
    r.gh0 = copy_out(h0->grad, r.n_state);
    r.gc0 = c0 ? copy_out(c0->grad, r.n_state) : NULL;
    r.gw_ih = copy_out(p.weight_ih->grad, r.n_w_ih);
    r.gw_hh = copy_out(p.weight_hh->grad, r.n_w_hh);
    r.gb_ih = copy_out(p.bias_ih->grad, r.n_b);
    r.gb_hh = copy_out(p.bias_hh->grad, r.n_b);
    em_step_end();
    return r;
}

static void compare_runs(kind k, bool bf, const char *how, const run_result *one, const run_result *two)
{
    struct {
        const char *what;
        const float *a, *b;
        int64_t n;
    } cmp[] = {{"sequence", one->seq, two->seq, one->n_seq}, {"h_n", one->h_n, two->h_n, one->n_state},
               {"c_n", one->c_n, two->c_n, one->c_n ? one->n_state : 0},
               {"grad x", one->gx, two->gx, one->n_x}, {"grad h0", one->gh0, two->gh0, one->n_state},
               {"grad c0", one->gc0, two->gc0, one->gc0 ? one->n_state : 0},
               {"grad weight_ih", one->gw_ih, two->gw_ih, one->n_w_ih},
               {"grad weight_hh", one->gw_hh, two->gw_hh, one->n_w_hh},
               {"grad bias_ih", one->gb_ih, two->gb_ih, one->n_b},
               {"grad bias_hh", one->gb_hh, two->gb_hh, one->n_b}};
    /* Other kernels (BLAS's for other shapes, or the panel kernel) sum in other orders, so
     * rounding differs a little; a race or a wrong row would not. */
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++)
        CHECK_MSG(cmp[i].n == 0 || test_max_violation(cmp[i].b, cmp[i].a, cmp[i].n, 1e-4, 1e-3) <= 1,
                  "%s%s: %s differs %s", kind_names[k], bf ? " batch_first" : "", cmp[i].what, how);
}

static void test_threads(void)
{
    for (int k = K_RNN; k <= K_GRU; k++) {
        for (int bf = 0; bf < 2; bf++) {
            run_result base = run_big((kind)k, 1, bf, true);
            static const struct {
                int threads;
                bool blas;
                const char *how;
            } variants[] = {{2, true, "between 1 and 2 threads (BLAS)"},
                            {1, false, "between BLAS and the panel kernel (1 thread)"},
                            {2, false, "between BLAS on 1 thread and the panel kernel on 2"}};
            for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
                run_result other = run_big((kind)k, variants[v].threads, bf, variants[v].blas);
                CHECK(base.seq && other.seq);
                if (base.seq && other.seq)
                    compare_runs((kind)k, bf, variants[v].how, &base, &other);
                free_result(&other);
            }
            free_result(&base);
        }
    }
    em_panel_gemm_set_disabled(false);
    em_set_num_threads(2);
}


/* A second backward over the same tape (the saved forward state must survive the first)
 * gives the same gradients again; with gradients off nothing is recorded and the values
 * are the same. */
static void test_repeat_and_inference(void)
{
    em_rng rng;
    em_rng_seed(&rng, 45);
    cell_closure c;
    make_closure(&c, &rng, K_LSTM, EM_ACT_NONE, false, true);
    c.use = USE_SEQ | USE_HN | USE_CN;
    em_tensor *out = cell_fn(&c, NULL, 0);
    CHECK(out && out->requires_grad);
    if (!out)
        return;
    float *g = malloc((size_t)out->numel * sizeof(float));
    for (int64_t i = 0; i < out->numel; i++)
        g[i] = em_rng_normal(&rng);
    CHECK(em_backward_with(out, g) == EM_OK);
    float *first = copy_out(c.p.weight_hh->grad, c.p.weight_hh->numel);
    float *first_h0 = copy_out(c.h0->grad, c.h0->numel);
    CHECK(em_backward_with(out, g) == EM_OK);
    bool doubled = true;
    for (int64_t i = 0; i < c.p.weight_hh->numel; i++)
        doubled &= fabsf(c.p.weight_hh->grad[i] - 2 * first[i]) <= 1e-5f + 1e-5f * fabsf(first[i]);
    for (int64_t i = 0; i < c.h0->numel; i++)
        doubled &= fabsf(c.h0->grad[i] - 2 * first_h0[i]) <= 1e-5f + 1e-5f * fabsf(first_h0[i]);
    CHECK_MSG(doubled, "a second backward over the tape did not add the same gradients again");
    float *values = copy_out(out->data, out->numel);
    free(first);
    free(first_h0);
    free(g);

    bool was = em_set_grad_enabled(false);
    size_t tape = em_tape_length();
    em_tensor *again = cell_fn(&c, NULL, 0);
    CHECK(again && !again->requires_grad && em_tape_length() == tape);
    if (again)
        test_tensor_close("lstm without gradients", again, values, 0, 0);
    em_set_grad_enabled(was);
    free(values);
    em_step_end();
}

/* A first layer: x needs no gradient and gets none; the weights still do. */
static void test_first_layer(void)
{
    em_rng rng;
    em_rng_seed(&rng, 52);
    cell_closure c;
    make_closure(&c, &rng, K_GRU, EM_ACT_NONE, false, true);
    c.x->requires_grad = false;
    c.h0 = NULL;
    c.use = USE_SEQ;
    em_tensor *out = cell_fn(&c, NULL, 0);
    CHECK(out && out->requires_grad);
    float *g = malloc((size_t)out->numel * sizeof(float));
    for (int64_t i = 0; out && i < out->numel; i++)
        g[i] = 1.0f;
    CHECK(out && em_backward_with(out, g) == EM_OK);
    CHECK(c.x->grad == NULL);
    CHECK(c.p.weight_ih->grad != NULL && c.p.weight_hh->grad != NULL);
    free(g);
    em_step_end();
}

/* batch_first on x [B, T, I] and seq-first on its transposed view (which the op copies on
 * the tape) compute the same thing: the sequences agree element for element after the
 * transpose, and so do the gradients reaching x. */
static void test_layouts(void)
{
    em_rng rng;
    em_rng_seed(&rng, 71);
    cell_closure c;
    make_closure(&c, &rng, K_LSTM, EM_ACT_NONE, true, true); /* x [B 3, T 4, I 3] */
    em_tensor *h_bf = NULL, *h_sf = NULL;
    em_tensor *bf = em_lstm(c.x, &c.p, c.h0, c.c0, true, &h_bf, NULL);
    CHECK(bf && bf->shape[0] == 3 && bf->shape[1] == 4);
    float g[48];
    for (int i = 0; i < 48; i++)
        g[i] = (float)(i % 7) - 3.0f;
    CHECK(bf && em_backward_with(bf, g) == EM_OK);
    float gx_bf[36];
    memcpy(gx_bf, c.x->grad, sizeof gx_bf);
    c.x->grad = NULL;

    em_tensor *xt = em_transpose(c.x, 0, 1); /* [T, B, I], not contiguous */
    CHECK(xt && !em_is_contiguous(xt));
    em_tensor *sf = em_lstm(xt, &c.p, c.h0, c.c0, false, &h_sf, NULL);
    em_tensor *sf_bf = em_contiguous(em_transpose(sf, 0, 1));
    CHECK(sf_bf && em_same_shape(sf_bf, bf));
    if (sf_bf && bf) {
        test_tensor_close("seq-first on a transposed view vs batch_first", sf_bf, bf->data, 0, 0);
        test_tensor_close("final h of both layouts", h_sf, h_bf->data, 0, 0);
        CHECK(em_backward_with(sf_bf, g) == EM_OK);
        CHECK(c.x->grad && test_max_violation(c.x->grad, gx_bf, 36, 1e-6, 1e-6) <= 1.0);
    }
    em_step_end();
}

/* ---- bad input ------------------------------------------------------------------- */

static void test_bad_input(void)
{
    em_rng rng;
    em_rng_seed(&rng, 61);
    cell_closure c;
    make_closure(&c, &rng, K_LSTM, EM_ACT_NONE, false, true); /* T 4, B 3, I 3, H 4 */
    em_tensor *h_n = (em_tensor *)&c, *c_n = (em_tensor *)&c;
    em_rnn_params p = c.p;

    em_tensor *x2 = test_randn(&rng, 2, (int64_t[]){4, 3}, 1.0f);
    CHECK(em_lstm(x2, &p, NULL, NULL, false, &h_n, &c_n) == NULL);
    CHECK_ERROR_CONTAINS("input [4, 3] must be [seq, batch, input_size]");
    CHECK(h_n == NULL && c_n == NULL);
    CHECK(em_lstm(x2, &p, NULL, NULL, true, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("[batch, seq, input_size]");

    em_tensor *x5 = test_randn(&rng, 3, (int64_t[]){4, 3, 5}, 1.0f);
    CHECK(em_lstm(x5, &p, NULL, NULL, false, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("weight_ih [16, 3] does not fit input [4, 3, 5]");
    CHECK_ERROR_CONTAINS("expected [16, 5]");

    p.weight_hh = test_randn(&rng, 2, (int64_t[]){12, 4}, 1.0f);
    CHECK(em_lstm(c.x, &p, NULL, NULL, false, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("weight_hh [12, 4] must be [4·hidden_size, hidden_size]");
    CHECK(em_gru(c.x, &p, NULL, false, NULL) == NULL);
    CHECK_ERROR_CONTAINS("weight_ih [16, 3] does not fit");
    p = c.p;

    p.bias_hh = test_randn(&rng, 1, (int64_t[]){15}, 1.0f);
    CHECK(em_lstm(c.x, &p, NULL, NULL, false, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("bias_hh [15] does not fit weight_hh [16, 4]: expected [16]");
    p = c.p;

    em_tensor *bad_h = test_randn(&rng, 2, (int64_t[]){2, 4}, 1.0f);
    CHECK(em_lstm(c.x, &p, bad_h, NULL, false, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("h0 [2, 4] does not fit input [4, 3, 3]: expected [3, 4]");
    em_tensor *bad_c = test_randn(&rng, 3, (int64_t[]){2, 3, 4}, 1.0f);
    CHECK(em_lstm(c.x, &p, c.h0, bad_c, false, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("c0 [2, 3, 4]");
    /* batch_first reads the batch from the first dimension. */
    CHECK(em_lstm(c.x, &p, c.h0, NULL, true, NULL, NULL) == NULL);
    CHECK_ERROR_CONTAINS("expected [4, 4]");

    cell_closure r;
    make_closure(&r, &rng, K_RNN, EM_ACT_TANH, false, true);
    CHECK(em_rnn(r.x, &r.p, NULL, EM_ACT_SIGMOID, false, NULL) == NULL);
    CHECK_ERROR_CONTAINS("nonlinearity must be tanh or relu, got sigmoid");
    CHECK(em_rnn(r.x, NULL, NULL, EM_ACT_TANH, false, NULL) == NULL);
    CHECK_ERROR_CONTAINS("no weights");

    /* An earlier failure passes through without a new message. */
    em_error("earlier failure");
    CHECK(em_gru(NULL, &p, NULL, false, NULL) == NULL);
    CHECK_ERROR_CONTAINS("earlier failure");
    em_step_end();
}

int main(void)
{
    test_parity();
    em_panel_gemm_set_disabled(true); /* the BLAS path of machines without AVX-512 */
    test_parity();
    em_panel_gemm_set_disabled(false);
    test_gradcheck_cells();
    test_only_state_requires_grad();
    test_threads();
    test_repeat_and_inference();
    test_first_layer();
    test_layouts();
    test_bad_input();
    return test_finish();
}
