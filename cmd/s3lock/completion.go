package main

import (
	"slices"

	"github.com/spf13/cobra"
)

const completionHelp = `Usage:
  s3lock completion bash|zsh|fish

Prints a script that makes the shell complete s3lock's commands and flags.
Load it in the current shell, or install it for every new one:

  bash:  source <(s3lock completion bash)
         s3lock completion bash > /etc/bash_completion.d/s3lock
  zsh:   source <(s3lock completion zsh)
         s3lock completion zsh > "${fpath[1]}/_s3lock"
  fish:  s3lock completion fish | source
         s3lock completion fish > ~/.config/fish/completions/s3lock.fish
`

const completionMore = `
Examples:
  s3lock completion bash > ~/.local/share/bash-completion/completions/s3lock
`

func newCompletionCommand() *cobra.Command {
	c := newCommand("completion", "print a shell completion script (bash, zsh or fish)", completionHelp, completionMore)
	c.ValidArgs = []string{"bash", "zsh", "fish"}
	c.Args = func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) != 1:
			return usageErr("want one shell: bash, zsh or fish; see 's3lock completion --help'")
		case !slices.Contains(c.ValidArgs, args[0]):
			return usageErr("unknown shell %q: want bash, zsh or fish", args[0])
		}
		return nil
	}
	c.RunE = func(c *cobra.Command, args []string) error {
		root, w := c.Root(), c.OutOrStdout()
		switch args[0] {
		case "bash":
			return root.GenBashCompletionV2(w, true)
		case "zsh":
			return root.GenZshCompletion(w)
		}
		return root.GenFishCompletion(w, true)
	}
	return c
}
