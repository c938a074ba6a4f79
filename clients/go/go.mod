module ringhub/clients/go

go 1.19
