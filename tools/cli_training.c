#include "cli_training.h"

#include <math.h>
#include <string.h>

#include "cli_stop.h"

static const char *const every_names[] = {"auto", "epoch", "step", NULL};
enum { EVERY_AUTO = 0, EVERY_EPOCH, EVERY_STEP };

int cli_run_check(const cli_run_options *r, const args_spec *spec)
{
    if (r->checkpoint_every > 0 && !r->checkpoint_path)
        return args_usage_error(spec, "--checkpoint-every needs --checkpoint FILE");
    return -1;
}

void cli_run_apply(const cli_run_options *r, em_train_opts *o)
{
    em_set_num_threads((int)r->threads);
    o->epochs = (int)r->epochs;
    o->batch_size = r->batch;
    o->seed = (uint64_t)r->seed;
    o->progress = (em_progress_mode)r->progress;
    o->log = stdout;
    o->save_path = r->save_path;
    o->checkpoint_path = r->checkpoint_path;
    o->checkpoint_every = r->checkpoint_every;
    o->resume_path = r->resume_path;
    o->max_steps = r->max_steps;
    o->interrupt_path = CLI_INTERRUPT_CHECKPOINT;
}

const char *const cli_progress_names[] = {"auto", "bar", "lines", "quiet", NULL};

void cli_optimizer_names(const char *names[EM_OPTIM_KIND_COUNT + 1])
{
    for (int k = 0; k < EM_OPTIM_KIND_COUNT; k++)
        names[k] = em_optim_name((em_optim_kind)k);
    names[EM_OPTIM_KIND_COUNT] = NULL;
}

void cli_training_init(cli_training *t)
{
    memset(t, 0, sizeof *t);
    t->optimizer = EM_OPTIM_SGD;
    cli_optimizer_names(t->optimizer_names);
    for (int k = 0; k < EM_SCHEDULE_KIND_COUNT; k++)
        t->schedule_names[k] = em_schedule_name((em_schedule_kind)k);
    snprintf(t->lr_default, sizeof t->lr_default, "%g for sgd, adagrad and rmsprop, %g for adam and adamw",
             (double)em_optim_defaults(EM_OPTIM_SGD).lr, (double)em_optim_defaults(EM_OPTIM_ADAM).lr);
    em_schedule_opts s = em_schedule_defaults(EM_SCHEDULE_PLATEAU);
    t->step_size = 1;
    t->gamma = 0.1;
    t->warmup_start = em_schedule_defaults(EM_SCHEDULE_COSINE).warmup_start;
    t->plateau_factor = s.factor;
    t->plateau_patience = s.patience;
}

/* Appends the entries (CLI_OPTIMIZER_OPTIONS) and returns how many. */
static int optimizer_options(cli_training *t, args_option *out)
{
    const args_option options[] = {
        {"optimizer", ARGS_CHOICE, "NAME", &t->optimizer, "sgd, adam, adagrad, rmsprop or adamw (PyTorch's rules)",
         NULL, 0, 0, t->optimizer_names, false},
        {"lr", ARGS_FLOAT, "X", &t->lr, "learning rate", t->lr_default, 1e-12, 1e6, NULL, false},
        {"momentum", ARGS_FLOAT, "M", &t->momentum, "momentum (sgd, rmsprop)", NULL, 0, 1, NULL, false},
        {"nesterov", ARGS_FLAG, NULL, &t->nesterov, "Nesterov momentum (sgd); needs --momentum", NULL, 0, 0, NULL,
         false},
        {"dampening", ARGS_FLOAT, "D", &t->dampening, "dampening of the momentum (sgd)", NULL, 0, 1, NULL, false},
        {"weight-decay", ARGS_FLOAT, "W", &t->weight_decay,
         "L2 penalty added to the gradients; for adamw the decoupled decay", "0; 0.01 for adamw", 0, 1e6, NULL,
         false},
        {"beta1", ARGS_FLOAT, "B", &t->beta1, "first-moment decay (adam, adamw)", "0.9", 0, 0.999999, NULL, false},
        {"beta2", ARGS_FLOAT, "B", &t->beta2, "second-moment decay (adam, adamw)", "0.999", 0, 0.999999, NULL,
         false},
        {"eps", ARGS_FLOAT, "E", &t->eps, "term added to the denominator (adam, adamw, adagrad, rmsprop)",
         "1e-8; 1e-10 for adagrad", 0, 1, NULL, false},
        {"amsgrad", ARGS_FLAG, NULL, &t->amsgrad, "AMSGrad's running maximum (adam, adamw)", NULL, 0, 0, NULL, false},
        {"alpha", ARGS_FLOAT, "A", &t->alpha, "smoothing constant (rmsprop)", "0.99", 0, 1, NULL, false},
        {"centered", ARGS_FLAG, NULL, &t->centered, "divide by the gradient's variance (rmsprop)", NULL, 0, 0, NULL,
         false},
        {"lr-decay", ARGS_FLOAT, "D", &t->lr_decay, "learning-rate decay per step (adagrad)", NULL, 0, 1e6, NULL,
         false},
        {"initial-accumulator", ARGS_FLOAT, "V", &t->initial_accumulator, "start of the accumulator (adagrad)", NULL,
         0, 1e6, NULL, false},
    };
    int n = (int)(sizeof options / sizeof options[0]);
    memcpy(out, options, sizeof options);
    return n;
}

/* Appends the entries (CLI_REGULARISATION_OPTIONS) and returns how many. */
static int regularisation_options(cli_training *t, args_option *out)
{
    const args_option options[] = {
        {"no-decay-bias-norm", ARGS_FLAG, NULL, &t->no_decay_bias_norm,
         "no weight decay on biases and normalisation scales (every 1-D tensor)", NULL, 0, 0, NULL, false},
        {"param-group", ARGS_STRING, "SPEC", &t->param_groups,
         "own lr or weight decay for the tensors whose names match: 'PATTERN:lr=X,wd=Y', several separated "
         "by ';', first match wins (e.g. '*.bias:wd=0;0.*:lr=0.01')",
         NULL, 0, 0, NULL, false},
        {"schedule", ARGS_CHOICE, "NAME", &t->schedule,
         "learning-rate schedule: constant, step, exponential, cosine (with --warmup), plateau", NULL, 0, 0,
         t->schedule_names, false},
        {"schedule-every", ARGS_CHOICE, "UNIT", &t->schedule_every,
         "advance the schedule after every epoch or every step; auto: per step for cosine, per epoch for the "
         "others", NULL,
         0, 0, every_names, false},
        {"step-size", ARGS_INT, "N", &t->step_size, "step schedule: epochs (or steps) between reductions", NULL, 1,
         1e12, NULL, false},
        {"gamma", ARGS_FLOAT, "G", &t->gamma, "step and exponential schedules: factor per reduction",
         "0.1; 0.9 for exponential", 1e-12, 1e6, NULL, false},
        {"warmup", ARGS_INT, "N", &t->warmup, "cosine schedule: steps (or epochs) of linear warm-up", NULL, 0, 1e12,
         NULL, false},
        {"warmup-start", ARGS_FLOAT, "F", &t->warmup_start, "cosine schedule: the warm-up's first factor of the lr",
         NULL, 1e-9, 1, NULL, false},
        {"min-lr", ARGS_FLOAT, "X", &t->min_lr, "floor of the cosine and plateau schedules", NULL, 0, 1e6, NULL,
         false},
        {"plateau-patience", ARGS_INT, "N", &t->plateau_patience,
         "plateau schedule: epochs without improvement before a reduction", NULL, 0, 1e9, NULL, false},
        {"plateau-factor", ARGS_FLOAT, "F", &t->plateau_factor, "plateau schedule: lr factor per reduction", NULL, 0,
         0.999999, NULL, false},
        {"clip-norm", ARGS_FLOAT, "X", &t->clip_norm, "clip the gradients' global L2 norm to X", "off", 1e-12, 1e12,
         NULL, false},
        {"clip-value", ARGS_FLOAT, "X", &t->clip_value, "clamp every gradient element to [-X, X]", "off", 1e-12,
         1e12, NULL, false},
        {"val-split", ARGS_FLOAT, "F", &t->val_split,
         "hold out this fraction of the training data (seeded with --seed) as a validation set, evaluated after "
         "every epoch",
         "off", 1e-6, 0.999999, NULL, false},
        {"patience", ARGS_INT, "N", &t->patience,
         "early stopping: stop after N epochs without a lower validation loss and keep the best epoch's weights "
         "(needs a validation set)",
         "off", 1, 1e9, NULL, false},
        {"keep-last", ARGS_FLAG, NULL, &t->keep_last, "with --patience: keep the last weights, not the best", NULL, 0,
         0, NULL, false},
    };
    int n = (int)(sizeof options / sizeof options[0]);
    memcpy(out, options, sizeof options);
    return n;
}

int cli_training_table(cli_training *t, const args_option *own, int n_own, bool with_optimizer,
                       args_option *out)
{
    memcpy(out, own, (size_t)n_own * sizeof *own);
    int n = n_own;
    if (with_optimizer)
        n += optimizer_options(t, out + n);
    n += regularisation_options(t, out + n);
    return n;
}

/* --NAME given for an optimizer it does not apply to. */
static int misplaced(const args_spec *spec, const char *name, em_optim_kind kind, unsigned applies)
{
    if (!args_given(spec, name) || (applies & (1u << kind)))
        return -1;
    char list[96] = "";
    for (int k = 0; k < EM_OPTIM_KIND_COUNT; k++)
        if (applies & (1u << k)) {
            strncat(list, list[0] ? " and " : "", sizeof list - strlen(list) - 1);
            strncat(list, em_optim_name((em_optim_kind)k), sizeof list - strlen(list) - 1);
        }
    return args_usage_error(spec, "--%s applies to %s, not %s", name, list, em_optim_name(kind));
}

#define BIT(k) (1u << (k))

static int apply_optimizer(cli_training *t, const args_spec *spec, em_train_opts *o)
{
    em_optim_kind kind = (em_optim_kind)t->optimizer;
    const struct {
        const char *name;
        unsigned applies;
    } scoped[] = {
        {"momentum", BIT(EM_OPTIM_SGD) | BIT(EM_OPTIM_RMSPROP)},
        {"nesterov", BIT(EM_OPTIM_SGD)},
        {"dampening", BIT(EM_OPTIM_SGD)},
        {"beta1", BIT(EM_OPTIM_ADAM) | BIT(EM_OPTIM_ADAMW)},
        {"beta2", BIT(EM_OPTIM_ADAM) | BIT(EM_OPTIM_ADAMW)},
        {"amsgrad", BIT(EM_OPTIM_ADAM) | BIT(EM_OPTIM_ADAMW)},
        {"eps", BIT(EM_OPTIM_ADAM) | BIT(EM_OPTIM_ADAMW) | BIT(EM_OPTIM_ADAGRAD) | BIT(EM_OPTIM_RMSPROP)},
        {"alpha", BIT(EM_OPTIM_RMSPROP)},
        {"centered", BIT(EM_OPTIM_RMSPROP)},
        {"lr-decay", BIT(EM_OPTIM_ADAGRAD)},
        {"initial-accumulator", BIT(EM_OPTIM_ADAGRAD)},
    };
    for (size_t i = 0; i < sizeof scoped / sizeof scoped[0]; i++) {
        int status = misplaced(spec, scoped[i].name, kind, scoped[i].applies);
        if (status >= 0)
            return status;
    }
    if (t->nesterov && t->momentum <= 0)
        return args_usage_error(spec, "--nesterov needs a --momentum above 0");
    if (t->nesterov && t->dampening != 0)
        return args_usage_error(spec, "--nesterov needs zero --dampening");
    o->optimizer = kind;
    o->optim = em_optim_defaults(kind);
    em_optim_opts *p = &o->optim;
    if (args_given(spec, "lr"))
        p->lr = (float)t->lr;
    if (args_given(spec, "momentum"))
        p->momentum = (float)t->momentum;
    p->nesterov = t->nesterov;
    p->dampening = (float)t->dampening;
    if (args_given(spec, "weight-decay"))
        p->weight_decay = (float)t->weight_decay;
    if (args_given(spec, "beta1"))
        p->beta1 = (float)t->beta1;
    if (args_given(spec, "beta2"))
        p->beta2 = (float)t->beta2;
    if (args_given(spec, "eps"))
        p->eps = (float)t->eps;
    p->amsgrad = t->amsgrad;
    if (args_given(spec, "alpha"))
        p->alpha = (float)t->alpha;
    p->centered = t->centered;
    p->lr_decay = (float)t->lr_decay;
    p->initial_accumulator_value = (float)t->initial_accumulator;
    return -1;
}

static int apply_schedule(cli_training *t, const args_spec *spec, em_train_opts *o)
{
    em_schedule_kind kind = (em_schedule_kind)t->schedule;
    const struct {
        const char *name;
        unsigned applies;
    } scoped[] = {
        {"step-size", BIT(EM_SCHEDULE_STEP)},
        {"gamma", BIT(EM_SCHEDULE_STEP) | BIT(EM_SCHEDULE_EXPONENTIAL)},
        {"warmup", BIT(EM_SCHEDULE_COSINE)},
        {"warmup-start", BIT(EM_SCHEDULE_COSINE)},
        {"min-lr", BIT(EM_SCHEDULE_COSINE) | BIT(EM_SCHEDULE_PLATEAU)},
        {"plateau-patience", BIT(EM_SCHEDULE_PLATEAU)},
        {"plateau-factor", BIT(EM_SCHEDULE_PLATEAU)},
        {"schedule-every", ~BIT(EM_SCHEDULE_CONSTANT)},
    };
    for (size_t i = 0; i < sizeof scoped / sizeof scoped[0]; i++)
        if (args_given(spec, scoped[i].name) && !(scoped[i].applies & BIT(kind)))
            return args_usage_error(spec, "--%s does not apply to the %s schedule (give --schedule)",
                                    scoped[i].name, em_schedule_name(kind));
    em_schedule_opts s = em_schedule_defaults(kind);
    s.step_size = t->step_size;
    if (args_given(spec, "gamma"))
        s.gamma = t->gamma;
    s.warmup = t->warmup;
    s.warmup_start = t->warmup_start;
    s.min_lr = t->min_lr;
    s.patience = (int)t->plateau_patience;
    s.factor = t->plateau_factor;
    if (t->schedule_every != EVERY_AUTO)
        s.per_step = t->schedule_every == EVERY_STEP;
    o->schedule = s;
    return -1;
}

int cli_training_apply(cli_training *t, const args_spec *spec, bool with_optimizer, em_train_opts *o)
{
    int status = with_optimizer ? apply_optimizer(t, spec, o) : -1;
    if (status >= 0)
        return status;
    status = apply_schedule(t, spec, o);
    if (status >= 0)
        return status;

    t->n_groups = 0;
    if (t->param_groups) {
        snprintf(t->group_text, sizeof t->group_text, "%s", t->param_groups);
        int n = em_param_groups_parse(t->group_text, t->groups, CLI_MAX_GROUPS - 1);
        if (n < 0)
            return args_usage_error(spec, "--param-group: %s", ember_last_error());
        t->n_groups = n;
    }
    if (t->no_decay_bias_norm)
        t->groups[t->n_groups++] = (em_param_group){.max_ndim = 1, .set_weight_decay = true, .weight_decay = 0.0f};
    o->param_groups = t->n_groups ? t->groups : NULL;
    o->n_param_groups = t->n_groups;

    o->clip_grad_norm = t->clip_norm;
    o->clip_grad_value = (float)t->clip_value;
    o->val_split = t->val_split;
    if (t->patience > 0 && !(t->val_split > 0))
        return args_usage_error(spec, "--patience needs a validation set: add --val-split F");
    if (t->keep_last && t->patience <= 0)
        return args_usage_error(spec, "--keep-last goes with --patience");
    o->patience = (int)t->patience;
    o->keep_last_weights = t->keep_last;
    return -1;
}

void cli_training_describe(const em_train_opts *o, char *buf, size_t cap)
{
    buf[0] = '\0';
    size_t n = 0;
#define ADD(...)                                                                                                      \
    do {                                                                                                              \
        if (n < cap) {                                                                                                \
            int w = snprintf(buf + n, cap - n, __VA_ARGS__);                                                          \
            n += w > 0 ? (size_t)w : 0;                                                                               \
        }                                                                                                             \
    } while (0)
    if (o->schedule.kind != EM_SCHEDULE_CONSTANT)
        ADD("%s schedule (per %s)", em_schedule_name(o->schedule.kind), o->schedule.per_step ? "step" : "epoch");
    if (o->schedule.kind == EM_SCHEDULE_COSINE && o->schedule.warmup > 0)
        ADD(" after %lld %s of warm-up", (long long)o->schedule.warmup, o->schedule.per_step ? "steps" : "epochs");
    if (o->optim.weight_decay > 0)
        ADD("%sweight decay %g", n ? ", " : "", (double)o->optim.weight_decay);
    if (o->clip_grad_norm > 0)
        ADD("%sgradient norm clipped to %g", n ? ", " : "", o->clip_grad_norm);
    if (o->clip_grad_value > 0)
        ADD("%sgradients clamped to ±%g", n ? ", " : "", (double)o->clip_grad_value);
    if (o->n_param_groups > 0)
        ADD("%s%d parameter group%s", n ? ", " : "", o->n_param_groups, o->n_param_groups == 1 ? "" : "s");
    if (o->val_split > 0)
        ADD("%s%g%% of the training data held out for validation", n ? ", " : "", 100.0 * o->val_split);
    if (o->patience > 0)
        ADD("%searly stopping after %d epochs without improvement", n ? ", " : "", o->patience);
#undef ADD
}
