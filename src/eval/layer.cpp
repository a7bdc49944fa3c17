// Translation unit that keeps the eval layer non-empty while it is being written.
