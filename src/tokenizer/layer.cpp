// Translation unit that keeps the tokenizer layer non-empty while it is being written.
