// Translation unit that keeps the io layer non-empty while it is being written.
