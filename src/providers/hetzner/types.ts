import type { operations } from "./generated/api.js";

type JsonOf<R> = R extends { content: { "application/json": infer T } } ? T : never;
type Ok<O extends keyof operations, S extends number> = JsonOf<
  operations[O]["responses"] extends Record<S, infer R> ? R : never
>;

export type ServerListResponse = Ok<"list_servers", 200>;
export type Server = ServerListResponse["servers"][number];
export type CreateServerRequest = operations["create_server"]["requestBody"]["content"]["application/json"];
export type CreateServerResponse = Ok<"create_server", 201>;
export type Action = Ok<"get_action", 200>["action"];
export type ServerType = Ok<"list_server_types", 200>["server_types"][number];
export type Location = Ok<"list_locations", 200>["locations"][number];
export type Pricing = Ok<"get_pricing", 200>["pricing"];
export type SshKey = Ok<"list_ssh_keys", 200>["ssh_keys"][number];
export type CreateSshKeyRequest = operations["create_ssh_key"]["requestBody"]["content"]["application/json"];
export type Image = Ok<"list_images", 200>["images"][number];
export type Pagination = ServerListResponse["meta"]["pagination"];
export type CreateImageResponse = Ok<"create_server_image", 201>;
