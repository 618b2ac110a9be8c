"""PostgreSQL programs, servers and catalogs: everything bika asks of PostgreSQL itself."""
