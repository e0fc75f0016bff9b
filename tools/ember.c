/* The ember command-line tool: finds the command named by the first argument and hands
 * it the rest. Exit status 0 on success, 1 when the library reports an error (the
 * message goes to stderr as "ember: ..."), 2 on a usage error. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "ember.h"

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv, int first);
} command;

static const command commands[] = {
    {"train", "train a model described in a file on a dataset", cmd_train_main},
    {"compare", "train variants (optimizers, activations, models, data sizes) alike; report", cmd_compare_main},
    {"eval", "loss and accuracy of saved weights on a dataset", cmd_eval_main},
    {"gradcheck", "compare a model's gradients with finite differences", cmd_gradcheck_main},
    {"finetune", "train from pre-trained weights: freeze, new head (transfer learning)", cmd_finetune_main},
    {"inspect", "list the tensors, dtypes, shapes and metadata of a safetensors file", cmd_inspect_main},
    {"predict", "classify images (PNG, PGM, PPM) with trained weights", cmd_predict_main},
    {"generate", "sample text from a trained language model, streaming it", cmd_generate_main},
};
enum { N_COMMANDS = (int)(sizeof commands / sizeof commands[0]) };

static void print_help(FILE *out)
{
    fprintf(out, "Usage: ember COMMAND [arguments]\n\n"
                 "ember trains and evaluates neural networks described in small text files.\n\n"
                 "Commands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-12s  %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "  %-12s  %s\n", "help", "help on a command (ember help train)");
    fprintf(out, "\nOptions:\n"
                 "  -h, --help      print this help and exit\n"
                 "  --version       print the version and exit\n"
                 "\n'ember COMMAND --help' lists the options of a command with their defaults.\n"
                 "Example:\n"
                 "  ember train models/mlp.ember --data fashion-mnist --epochs 1 --save mlp.safetensors\n");
}

static const command *find_command(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown_command(const char *name)
{
    fprintf(stderr, "ember: unknown command '%s'", name);
    const char *guess = NULL;
    int best = 3;
    for (int i = 0; i < N_COMMANDS; i++) {
        int d = args_edit_distance(name, commands[i].name);
        if (d < best) {
            best = d;
            guess = commands[i].name;
        }
    }
    if (guess)
        fprintf(stderr, " (did you mean '%s'?)", guess);
    fprintf(stderr, "\nTry 'ember --help' for the list of commands.\n");
    return EXIT_USAGE;
}

static int help_on(const char *name)
{
    const command *c = find_command(name);
    if (!c)
        return unknown_command(name);
    char *help_argv[] = {(char *)"ember", (char *)name, (char *)"--help", NULL};
    return c->run(3, help_argv, 2);
}

int main(int argc, char **argv)
{
    cli_apply_spin_policy(argv);
    if (argc < 2) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
        print_help(stdout);
        return EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("ember %s\n", em_version());
        return EXIT_OK;
    }
    if (strcmp(name, "help") == 0) {
        if (argc == 2) {
            print_help(stdout);
            return EXIT_OK;
        }
        if (argc > 3) {
            fprintf(stderr, "ember help: expected one command name\n");
            return EXIT_USAGE;
        }
        return help_on(argv[2]);
    }
    if (name[0] == '-') {
        fprintf(stderr, "ember: unknown option '%s' before the command\n"
                        "Try 'ember --help' for the list of commands.\n", name);
        return EXIT_USAGE;
    }
    const command *c = find_command(name);
    if (!c)
        return unknown_command(name);
    int status = c->run(argc, argv, 2);
    fflush(stdout);
    em_release_thread_state();
    return status;
}
