DROP TABLE ocsp_answers;
DROP TABLE published_crls;
DROP TABLE leases;
