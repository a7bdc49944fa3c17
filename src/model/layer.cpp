// Translation unit that keeps the model layer non-empty while it is being written.
