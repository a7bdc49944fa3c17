// Translation unit that keeps the kernels layer non-empty while it is being written.
