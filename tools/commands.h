/* The commands of the ember tool. Each takes the whole argv with argv[first] being
 * the first argument after the command name, and returns the exit status. */
#ifndef EMBER_TOOLS_COMMANDS_H
#define EMBER_TOOLS_COMMANDS_H

/* Makes idle OpenMP workers sleep rather than spin (re-executes the tool once if needed). */
void cli_apply_spin_policy(char **argv);

int cmd_train_main(int argc, char **argv, int first);
int cmd_compare_main(int argc, char **argv, int first);
int cmd_eval_main(int argc, char **argv, int first);
int cmd_gradcheck_main(int argc, char **argv, int first);
int cmd_inspect_main(int argc, char **argv, int first);
int cmd_finetune_main(int argc, char **argv, int first);
int cmd_predict_main(int argc, char **argv, int first);
int cmd_generate_main(int argc, char **argv, int first);

#endif
