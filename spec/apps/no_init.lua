return { port = 0 }
