// Translation unit that keeps the quant layer non-empty while it is being written.
