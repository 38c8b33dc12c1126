"""How long things live and the sweeps that end them (RET-)."""
